"""The ServerApp a deployment runs: fedsim's own ServerApp over a byte-counting Grid.

``fedsim deploy run`` ships the resolved experiment config inside the run config
(``config-toml``) because the ServerApp runs on the SuperLink's machine, which may not see the
submitter's files. This app writes it to ``results-dir/config.toml`` there, runs
:func:`fedsim.server_app.main` unchanged (same round loop, same meter, same results folder as
in simulation) and adds ``wire.json``: tree bytes of every message in both directions, for
the cross-check against the SuperLink's counters.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.deploy.wire import WIRE_FILE, CountingGrid
from fedsim.results.writer import CONFIG_FILE
from fedsim.run_dirs import claim_run_dir
from fedsim.server_app import main as fedsim_main

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Write the shipped config into the results folder, then run fedsim's ServerApp."""
    rc = context.run_config
    run_dir = Path(str(rc["results-dir"])).expanduser()
    # marks the folder as this run's results folder for fedsim's ServerApp; refused if
    # another run used it (never overwrite its config, resume its checkpoint, relabel it)
    claim_run_dir(run_dir, {"engine": "deploy", "superlink_run_id": context.run_id})
    config_path = run_dir / CONFIG_FILE
    if str(rc.get("config-toml", "")):
        config_path.write_text(str(rc["config-toml"]))
    inner = Context(run_id=context.run_id, node_id=context.node_id,
                    node_config=context.node_config, state=context.state,
                    run_config={**rc, "config-path": str(config_path.resolve())})
    counting = CountingGrid(grid)
    try:
        fedsim_main(counting, inner)
    finally:
        counting.write(run_dir / WIRE_FILE)
