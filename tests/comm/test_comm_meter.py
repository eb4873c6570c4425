"""The byte meter measures Flower's real serialized sizes and leaves messages picklable."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.task_identity import TaskIdentity

from fedsim.comm import CommMeter, FloatCodec, IntCodec, SignCodec, message_wire_bytes
from fedsim.comm.meter import (
    PUSH_OVERHEAD_BYTES,
    bytes_to_target,
    message_payload_bytes,
)


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _tree_bytes_formula(msg: Message) -> int:
    """Flower's own count (docs/design-notes.md#message-size-on-the-wire), verbatim."""
    return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())


def _content(arrays: dict[str, np.ndarray], metrics: bool = True) -> RecordDict:
    rd = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()})})
    if metrics:
        rd["metrics"] = MetricRecord({"num-examples": 10, "loss": 0.5})
    return rd


def _instruction(content: RecordDict, node: int) -> Message:
    return Message(content, dst_node_id=node, message_type=MessageType.TRAIN)


def _reply(instruction: Message, content: RecordDict) -> Message:
    return Message(content, reply_to=instruction)


def _fresh_copy(msg: Message) -> Message:
    return pickle.loads(pickle.dumps(msg))


def _strip(msg: Message) -> None:
    for obj in get_all_nested_objects(msg).values():
        if isinstance(obj, Array):
            obj.__dict__.pop("_chunks", None)


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("arrays", [
    {"w": RNG.standard_normal((64, 10)).astype(np.float32), "b": np.zeros(10, np.float32)},
    SignCodec().encode(RNG.standard_normal(650)),
    IntCodec(20).encode(RNG.integers(-20, 21, 1000)),
    {"big": RNG.standard_normal(1_500_000).astype(np.float32)},  # 6 MB: two 5 MiB chunks
])
def test_wire_bytes_agree_with_the_reference_formula(arrays: dict[str, np.ndarray]) -> None:
    msg = _instruction(_content(arrays), node=3)
    expected = _tree_bytes_formula(_fresh_copy(msg))
    assert message_wire_bytes(msg) == expected
    assert message_wire_bytes(msg) == expected  # stable on a second measurement
    assert message_payload_bytes(msg) == sum(a.nbytes for a in arrays.values())


def test_measuring_leaves_messages_picklable() -> None:
    msg = _instruction(_content({"x": np.ones(1000, np.float32)}), node=2)
    _tree_bytes_formula(msg)  # the raw formula leaves memoryview chunks behind ...
    with pytest.raises(TypeError, match="memoryview"):
        pickle.dumps(msg)
    message_wire_bytes(msg)  # ... the meter removes them
    size = len(pickle.dumps(msg))
    copy.deepcopy(msg)
    assert size < 2 * 4000  # the data is not carried twice
    restored = pickle.loads(pickle.dumps(msg))
    np.testing.assert_array_equal(restored.content["arrays"]["x"].numpy(), np.ones(1000))


def test_one_million_parameters_sign_and_fp32_messages() -> None:
    d = 1_000_000
    x = np.random.default_rng(1).standard_normal(d).astype(np.float32)
    sign_msg = _instruction(_content(SignCodec().encode(x)), node=1)
    fp32_msg = _instruction(_content(FloatCodec("fp32").encode(x)), node=1)
    sign_bytes = message_wire_bytes(sign_msg)
    fp32_bytes = message_wire_bytes(fp32_msg)
    assert abs(sign_bytes / (d / 8) - 1) < 0.02
    assert abs(fp32_bytes / (4 * d) - 1) < 0.02
    assert fp32_bytes / sign_bytes > 31.0


def test_downlink_shared_content_measured_once_equals_per_message_sum() -> None:
    shared = _content({"w": np.arange(5000, dtype=np.float32)})
    messages = [_instruction(shared, node) for node in (5, 17, 300, 2**40)]
    expected = [_tree_bytes_formula(_fresh_copy(m)) for m in messages]
    meter = CommMeter()
    meter.downlink(messages)
    row = meter.end_round()
    assert row["downlink_bytes"] == sum(expected)
    assert row["downlink_messages"] == 4
    assert row["downlink_payload_bytes"] == 4 * 5000 * 4
    assert row["num_params"] == 5000  # inferred from the "arrays" record
    per_node = {r["node_id"]: r["downlink_bytes"] for r in meter.client_records()}
    assert per_node == dict(zip((5, 17, 300, 2**40), expected, strict=True))
    pickle.dumps(messages)  # chunks stripped after the call
    assert len(pickle.dumps(messages)) < 2 * 20_000


def test_downlink_takes_sizes_an_engine_measured_and_measures_the_rest() -> None:
    shared = _content({"w": np.arange(5000, dtype=np.float32)})
    messages = [_instruction(shared, node) for node in (5, 17, 300)]
    exact = [_tree_bytes_formula(_fresh_copy(m)) for m in messages]
    meter = CommMeter()
    meter.downlink(messages, [None, 1234, None])  # one size given (a made-up number)
    row = meter.end_round()
    assert row["downlink_bytes"] == exact[0] + 1234 + exact[2]
    assert row["downlink_payload_bytes"] == 3 * 5000 * 4 and row["num_params"] == 5000
    assert [r["downlink_bytes"] for r in meter.client_records()] == [exact[0], 1234, exact[2]]


def test_round_metrics_for_sign_uplink() -> None:
    d, n = 100_000, 4
    rng = np.random.default_rng(2)
    model = _content({"w": rng.standard_normal(d).astype(np.float32)})
    instructions = [_instruction(model, node) for node in range(1, n + 1)]
    meter = CommMeter(num_params=d)
    for rnd in (1, 2):
        replies = [_reply(m, _content(SignCodec().encode(rng.standard_normal(d))))
                   for m in instructions]
        sizes = [_tree_bytes_formula(_fresh_copy(r)) for r in replies]
        meter.downlink(instructions)
        meter.uplink(replies)
        row = meter.end_round()
        json.dumps(row)  # plain JSON types only
        assert all(v is None or type(v) in (int, float) for v in row.values())
        assert row["uplink_replies"] == n and row["uplink_error_replies"] == 0
        assert row["uplink_bytes"] == sum(sizes)
        assert row["uplink_payload_bytes"] == n * math.ceil(d / 8)
        assert row["uplink_bytes_per_client"] == pytest.approx(sum(sizes) / n)
        assert row["uplink_payload_bits_per_param"] == pytest.approx(1.0)
        assert row["uplink_payload_compression_ratio"] == pytest.approx(32.0)
        assert 1.0 < row["uplink_bits_per_param"] < 1.1  # ~900 B of headers on 12.5 kB
        assert 29.0 < row["uplink_compression_ratio"] < 32.0
        assert row["uplink_superlink_bytes_estimate"] == sum(sizes) + n * PUSH_OVERHEAD_BYTES
        assert row["cumulative_uplink_bytes"] == sum(r["uplink_bytes"] for r in meter.history)
        assert row["cumulative_downlink_bytes"] == rnd * row["downlink_bytes"]
        assert abs(row["downlink_bytes_per_client"] / (4 * d) - 1) < 0.02
    assert [r["node_id"] for r in meter.client_records()] == [1, 2, 3, 4]
    pickle.dumps(replies)


def test_error_replies_and_presized_uplink() -> None:
    model = _content({"w": np.zeros(100, np.float32)})
    ins = [_instruction(model, node) for node in (1, 2, 3)]
    good = [_reply(m, _content(IntCodec(3).encode(np.zeros(100)))) for m in ins[:2]]
    bad = Message(Error(code=0, reason="client crashed"), reply_to=ins[2])
    sizes = [message_wire_bytes(m) for m in [*good, bad]]
    meter = CommMeter(num_params=100)
    meter.uplink([*good, bad], wire_bytes=sizes)
    row = meter.end_round()
    assert row["uplink_replies"] == 3 and row["uplink_error_replies"] == 1
    assert row["uplink_bytes"] == sum(sizes) and sizes[2] > 0
    assert row["uplink_bytes_per_client"] == pytest.approx((sizes[0] + sizes[1]) / 2)
    assert row["uplink_payload_bytes_per_client"] == math.ceil(3 * 100 / 8)
    assert row["uplink_payload_bits_per_param"] == pytest.approx(8 * 38 / 100)
    errors = {r["node_id"]: r["uplink_error"] for r in meter.client_records()}
    assert errors == {1: False, 2: False, 3: True}
    with pytest.raises(ValueError, match="sizes for"):
        meter.uplink(good, wire_bytes=[1])


def test_empty_round_and_unknown_num_params() -> None:
    meter = CommMeter()
    row = meter.end_round()
    assert row["uplink_bytes"] == 0 and row["downlink_bytes"] == 0
    assert row["uplink_bits_per_param"] is None and row["num_params"] is None
    json.dumps(row)


def test_bytes_to_target() -> None:
    rows = [{"round": 0, "central_accuracy": 0.1},
            {"round": 1, "central_accuracy": 0.5, "cumulative_uplink_bytes": 100,
             "cumulative_downlink_bytes": 400},
            {"round": 2, "central_accuracy": 0.8, "cumulative_uplink_bytes": 200,
             "cumulative_downlink_bytes": 800}]
    assert bytes_to_target(rows, 0.7) == {"rounds_to_target": 2, "uplink_bytes_to_target": 200,
                                          "downlink_bytes_to_target": 800}
    assert bytes_to_target(rows, 0.9)["uplink_bytes_to_target"] is None


def test_errors_no_client_sent_cost_no_uplink() -> None:
    """An error reply the SuperLink (or the engine) makes for a client that never answered
    counts as a reply with an error but adds no uplink bytes; a client's own error does."""
    from flwr.common.constant import ErrorCode

    model = _content({"w": np.zeros(10, np.float32)})
    ins = [_instruction(model, node) for node in (1, 2, 3)]
    own = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason="boom"),
                  reply_to=ins[0])
    unreachable = Message(Error(code=ErrorCode.NODE_UNAVAILABLE, reason="offline"),
                          reply_to=ins[1])
    late = Message(Error(code=ErrorCode.REPLY_MESSAGE_UNAVAILABLE, reason="timeout"),
                   reply_to=ins[2])
    meter = CommMeter(num_params=10)
    meter.uplink([own, unreachable, late])
    row = meter.end_round()
    assert row["uplink_replies"] == 3 and row["uplink_error_replies"] == 3
    assert row["uplink_bytes"] == message_wire_bytes(own) > 0
    assert row["uplink_superlink_bytes_estimate"] == message_wire_bytes(own) + 645
