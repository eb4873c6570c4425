"""FedAvg's weighted averages on npy views and plain dicts give Flower's results bit for bit."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import (
    aggregate_arrayrecords,
    aggregate_metricrecords,
)

from strategies.averaging import weighted_average, weighted_metrics


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


def test_weighted_metrics_are_flowers() -> None:
    rng = np.random.default_rng(2)
    records = [RecordDict({
        "arrays": ArrayRecord({"w": Array(np.zeros(2, np.float32))}),
        "metrics": MetricRecord({"num-examples": int(rng.integers(1, 20)),
                                 "train-loss": float(rng.normal()),
                                 "per-class": [float(v) for v in rng.normal(size=3)],
                                 "steps": int(rng.integers(1, 9))})})
        for _ in range(25)]
    ours = weighted_metrics(records, "num-examples")
    theirs = aggregate_metricrecords(records, "num-examples")
    assert dict(ours) == dict(theirs) and "num-examples" not in ours


def test_screened_fedavg_ends_where_flowers_fedavg_does() -> None:
    """FedAvg with fedsim's screening (Flower's consistency pass skipped, metrics averaged on
    plain dicts) returns Flower's own FedAvg arrays and metrics for the same replies."""
    from flwr.app import ConfigRecord, Message
    from flwr.serverapp.strategy import FedAvg

    from fedsim.engine.base import assign_message_id, set_server_identity
    from strategies.fedavg import FedAvgStrategy

    set_server_identity(7)
    rng = np.random.default_rng(3)
    model = ArrayRecord({"w": Array(np.zeros((3, 4), np.float32)),
                         "b": Array(np.zeros(4, np.float32))})
    replies = []
    for node in range(2, 8):
        ins = Message(RecordDict({"arrays": model, "config": ConfigRecord({})}),
                      dst_node_id=node, message_type="train")
        assign_message_id(ins)
        content = RecordDict({
            "arrays": ArrayRecord({k: Array(rng.normal(size=a.shape).astype(np.float32))
                                   for k, a in model.items()}),
            "metrics": MetricRecord({"num-examples": node, "train-loss": float(rng.random())})})
        replies.append(Message(content, reply_to=ins))
    ours = FedAvgStrategy()
    ours.configure_train(1, model, ConfigRecord({}), _NoGrid())
    arrays, metrics = ours.aggregate_train(1, replies)
    ref_arrays, ref_metrics = FedAvg().aggregate_train(1, replies)
    assert ours.round_report["train_replies"] == 6
    assert [(k, a.data) for k, a in arrays.items()] == \
        [(k, a.data) for k, a in ref_arrays.items()]
    assert dict(metrics) == dict(ref_metrics)


class _NoGrid:
    def get_node_ids(self) -> list[int]:
        return list(range(2, 8))
