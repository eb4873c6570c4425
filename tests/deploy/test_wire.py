"""The counting Grid and the cross-check, without a SuperLink."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedsim.deploy.wire import CountingGrid, cross_check, envelope_bytes, tree_bytes


@pytest.fixture(autouse=True)
def _task_identity():
    from flwr.supercore.task_identity import TaskIdentity

    names = ("_run_id", "_node_id", "_task_id")
    saved = [TaskIdentity.__dict__.get(n) for n in names]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    for name, value in zip(names, saved, strict=True):
        setattr(TaskIdentity, name, value)


def _instruction(node: int) -> Message:
    msg = Message(RecordDict({"c": ConfigRecord({"lr": 0.1})}), dst_node_id=node,
                  message_type="train")
    msg.metadata.__dict__["_message_id"] = msg.object_id
    return msg


def _reply(ins: Message, node: int) -> Message:
    arrays = ArrayRecord({"w": Array(np.ones((10, 64), np.float32)),
                          "b": Array(np.zeros(10, np.float32))})
    rep = Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"n": 5})}),
                  reply_to=ins)
    rep.metadata.__dict__["_src_node_id"] = node
    return rep


class FakeGrid(CountingGrid):
    """Only send_and_receive matters here."""

    def __init__(self) -> None:
        super().__init__(inner=None)  # type: ignore[arg-type]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = [_reply(m, m.metadata.dst_node_id) for m in messages]
        self._sent(messages)
        self._received(replies)
        return replies


def test_tree_bytes_is_the_sum_of_deflated_objects() -> None:
    rep = _reply(_instruction(7), 7)
    assert tree_bytes(rep) == sum(len(o.deflate()) for o in get_all_nested_objects(rep).values())
    assert 2600 < tree_bytes(rep) < 5000  # 650 float32 + npy headers + object headers


def test_envelope_is_about_the_documented_645_bytes() -> None:
    assert 500 < envelope_bytes(_reply(_instruction(2**62), 2**62)) < 800


def test_counting_grid_totals() -> None:
    grid = FakeGrid()
    grid.send_and_receive([_instruction(11), _instruction(12)])
    t = grid.totals()
    assert t["uplink_messages"] == 2 and t["downlink_messages"] == 2
    assert t["uplink"]["train"]["tree_bytes"] == t["uplink_tree_bytes"] > 5000
    assert t["uplink_envelope_bytes"] > 0


def test_cross_check_bounds() -> None:
    ok = cross_check(100_000, 10, 100_000 + 6_000)
    assert ok["agrees"] and ok["overhead_per_reply"] == 600
    assert not cross_check(100_000, 10, 99_000)["agrees"]  # less than the meter saw
    assert not cross_check(100_000, 10, 100_000 + 1_000 + 6_450 + 1)["agrees"]
    exact = cross_check(100_000, 10, 107_500, envelopes=7_500)  # 750 B per reply
    assert exact["agrees"] and exact["prediction_error_bytes"] == 0
    assert not exact["agrees_documented_645"]
