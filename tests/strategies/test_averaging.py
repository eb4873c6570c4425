"""FedAvg's weighted average on npy views gives Flower's result bit for bit."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from strategies.averaging import weighted_average


def test_weighted_average_is_bitwise_flowers() -> None:
    rng = np.random.default_rng(1)
    records = [RecordDict({
        "arrays": ArrayRecord({"w": Array(rng.normal(size=(3, 4)).astype(np.float32)),
                               "b": Array(rng.normal(size=(5,)))}),
        "metrics": MetricRecord({"num-examples": int(rng.integers(1, 20))})})
        for _ in range(30)]
    ours = weighted_average(records, "num-examples")
    theirs = aggregate_arrayrecords(records, "num-examples")
    assert [(k, a.dtype, a.shape, a.data) for k, a in ours.items()] == \
        [(k, a.dtype, a.shape, a.data) for k, a in theirs.items()]
