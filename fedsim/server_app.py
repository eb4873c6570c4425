"""The fedsim ServerApp (Flower Message API): reads the resolved experiment config named by the
run config key ``config-path`` and runs the round loop, metering every message in both
directions (``fedsim.comm.meter.CommMeter``). Its results folder is the folder of
that config file. The same object runs under every engine.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.comm.meter import CommMeter
from fedsim.config import load_config
from fedsim.federation import run_federation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment whose resolved config is ``run_config["config-path"]``."""
    path = Path(str(context.run_config["config-path"]))
    cfg = load_config(path)
    run_federation(grid, cfg, path.parent, meter=CommMeter())
