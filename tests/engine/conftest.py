"""Engine test fixtures: one local Ray per test module (logical CPUs and GPUs), always shut down."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray with 4 logical CPUs and 2 logical GPUs (no GPU needed)."""
    import ray

    path = os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1",
                                       "FLWR_TELEMETRY_ENABLED": "0"}})
    try:
        yield ray
    finally:
        ray.shutdown()


def run_stock(num_nodes: int, run_config: dict | None = None, **grid_kw):
    """Run the stock FedAvg ServerApp over a RayGrid; return (RESULT copy, grid)."""
    import stock_apps

    from fedsim.engine.base import SUPERLINK_NODE_ID
    from fedsim.engine.ray_grid import RayGrid

    stock_apps.RESULT.clear()
    random.seed(0)  # FedAvg samples (and orders) nodes with the global `random`
    run_config = dict(run_config or {})
    grid = RayGrid("stock_apps:client_app", num_nodes, run_config, seed=0, **grid_kw)
    try:
        ctx = Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                      state=RecordDict(), run_config=run_config)
        stock_apps.server_app(grid, ctx)
        grid.actor_report = grid.describe_actors()
    finally:
        grid.shutdown()
    return dict(stock_apps.RESULT), grid
