"""The fedsim ServerApp (Flower Message API): runs the experiment named by the run config key
``config-path`` and writes its results folder, metering every message in both directions
(``fedsim.comm.meter.CommMeter``). The same object runs under every engine.

``fedsim run`` passes the resolved config inside a new results folder (which holds
``run.json``). Started directly with ``flwr run .``, ``config-path`` may name any experiment
file (default: ``configs/quickstart.toml``) and a new results folder is made under
``output.dir``.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.comm.meter import CommMeter
from fedsim.config import load_config, save_config
from fedsim.federation import run_federation
from fedsim.results.writer import CONFIG_FILE
from fedsim.run_dirs import RUN_FILE, new_run_dir

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.toml"

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment whose config is ``run_config["config-path"]``."""
    raw = str(context.run_config.get("config-path", "") or "")
    path = Path(raw).expanduser() if raw else DEFAULT_CONFIG
    cfg = load_config(path)
    if (path.parent / RUN_FILE).exists():
        run_dir = path.parent
    else:
        run_dir = new_run_dir(None, cfg.output.dir, cfg.name)
        save_config(cfg, run_dir / CONFIG_FILE)
    run_federation(grid, cfg, run_dir, meter=CommMeter())
