"""Stock ServerApp for deployment tests: Flower's FedAvg over a byte-counting Grid.

Writes ``wire.json`` (tree bytes per direction and message type) and ``result.json`` (the
per-round metrics) into ``run_config["out-dir"]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedsim.deploy.wire import CountingGrid

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    out = Path(str(rc["out-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    counting = CountingGrid(grid)
    n = int(rc["min-nodes"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=n,
                      min_evaluate_nodes=n, min_available_nodes=n)
    initial = ArrayRecord({"weight": Array(np.zeros((10, 64), np.float32)),
                           "bias": Array(np.zeros(10, np.float32))})
    try:
        result = strategy.start(grid=counting, initial_arrays=initial,
                                num_rounds=int(rc["num-server-rounds"]), timeout=300)
        rounds = {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
        (out / "result.json").write_text(json.dumps({"evaluate": rounds}, indent=2))
    finally:
        counting.write(out / "wire.json")
