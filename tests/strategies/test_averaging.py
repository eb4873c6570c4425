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
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import FedAvg

    from strategies.fedavg import FedAvgStrategy

    model, replies = _model_and_replies(np.random.default_rng(3))
    ours = FedAvgStrategy()
    ours.configure_train(1, model, ConfigRecord({}), _NoGrid())
    arrays, metrics = ours.aggregate_train(1, replies)
    ref_arrays, ref_metrics = FedAvg().aggregate_train(1, replies)
    assert ours.round_report["train_replies"] == 6
    assert [(k, a.data) for k, a in arrays.items()] == \
        [(k, a.data) for k, a in ref_arrays.items()]
    assert dict(metrics) == dict(ref_metrics)


def test_screened_fedadam_is_flowers_step_kept_in_float32() -> None:
    """FedAdam with fedsim's screening: Flower's own FedAdam step (float64 moments), cast back
    to the model's float32; a NaN reply is rejected and counted, not averaged."""
    from flwr.app import ConfigRecord
    from flwr.serverapp.strategy import FedAdam

    from strategies.fedadam import FedAdamStrategy

    model, replies = _model_and_replies(np.random.default_rng(4))
    bad = _model_and_replies(np.random.default_rng(5), nodes=[8])[1][0]
    bad.content["arrays"]["w"] = Array(np.full((3, 4), np.nan, np.float32))
    ours, ref = FedAdamStrategy(eta=0.1), FedAdam(eta=0.1)
    ours.configure_train(1, model, ConfigRecord({}), _NoGrid())
    ref.configure_train(1, model, ConfigRecord({}), _NoGrid())
    arrays, _ = ours.aggregate_train(1, [*replies, bad])
    ref_arrays, _ = ref.aggregate_train(1, replies)
    assert ours.round_report["train_replies"] == 6 and ours.round_report["train_rejected"] == 1
    for key, value in arrays.items():
        expected = ref_arrays[key].numpy()
        assert expected.dtype == np.float64 and value.numpy().dtype == np.float32
        np.testing.assert_array_equal(value.numpy(), expected.astype(np.float32))


def _model_and_replies(rng: np.random.Generator, nodes: list[int] | None = None) -> tuple[
        ArrayRecord, list]:
    """A zero model and, per node, a train reply with random arrays and node-many examples."""
    from flwr.app import ConfigRecord, Message

    from fedsim.engine.base import assign_message_id, set_server_identity

    set_server_identity(7)
    model = ArrayRecord({"w": Array(np.zeros((3, 4), np.float32)),
                         "b": Array(np.zeros(4, np.float32))})
    replies = []
    for node in nodes or range(2, 8):
        ins = Message(RecordDict({"arrays": model, "config": ConfigRecord({})}),
                      dst_node_id=node, message_type="train")
        assign_message_id(ins)
        content = RecordDict({
            "arrays": ArrayRecord({k: Array(rng.normal(size=a.shape).astype(np.float32))
                                   for k, a in model.items()}),
            "metrics": MetricRecord({"num-examples": node, "train-loss": float(rng.random())})})
        replies.append(Message(content, reply_to=ins))
    return model, replies


class _NoGrid:
    def get_node_ids(self) -> list[int]:
        return list(range(2, 9))
