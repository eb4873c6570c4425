"""``fedsim.comm.tree_size`` gives Flower's own serialized-size count, to the byte."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedsim.comm.tree_size import tree_bytes
from fedsim.engine.base import assign_message_id, set_server_identity

RNG = np.random.default_rng(0)
ZEROS = np.zeros((4, 4), np.float32)


def flower_count(msg: Message) -> int:
    return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())


def fresh(msg: Message) -> Message:
    return pickle.loads(pickle.dumps(msg))


CONTENTS = {
    "model": lambda: RecordDict({
        "arrays": ArrayRecord({"w": Array(RNG.normal(size=(16, 1, 3, 3)).astype(np.float32)),
                               "b": Array(np.zeros(16, np.float32))}),
        "config": ConfigRecord({"server-round": 3, "fedsim": "{\"a\": 1}"})}),
    "identical arrays": lambda: RecordDict({"arrays": ArrayRecord(
        {"a": Array(ZEROS), "b": Array(ZEROS.copy()), "c": Array(ZEROS.reshape(16))})}),
    "identical records": lambda: RecordDict({
        "r1": ArrayRecord({"a": Array(ZEROS)}), "r2": ArrayRecord({"a": Array(ZEROS)}),
        "m1": MetricRecord({"k": 1.0}), "m2": MetricRecord({"k": 1.0})}),
    "same bytes, other stype": lambda: RecordDict({"r": ArrayRecord({
        "a": Array(dtype="uint8", shape=(3,), stype="custom", data=b"abcdef"),
        "b": Array(dtype="uint8", shape=(6,), stype="other", data=b"abcdef")})}),
    "escaped names": lambda: RecordDict({"ärrays\"x": ArrayRecord({"é/k\\": Array(ZEROS)}),
                                         "metrics": MetricRecord({"num-examples": 14})}),
    "empty": lambda: RecordDict({}),
    "empty record": lambda: RecordDict({"arrays": ArrayRecord()}),
    "empty array": lambda: RecordDict({"arrays": ArrayRecord({"a": Array(np.zeros(0))})}),
    "two chunks": lambda: RecordDict({"arrays": ArrayRecord(
        {"a": Array(np.zeros(1_500_000, np.float32)), "b": Array(RNG.normal(size=(10,)))})}),
}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_tree_bytes_equals_flowers_count(name: str) -> None:
    set_server_identity(123)
    ins = Message(CONTENTS[name](), dst_node_id=int(RNG.integers(2, 2**63)),
                  message_type="train", group_id=str(int(RNG.integers(1, 10**6))))
    assign_message_id(ins)
    reply = Message(CONTENTS[name](), reply_to=ins)
    error = Message(Error(code=2, reason="boom"), reply_to=ins)
    for msg in (ins, reply, error):
        assert tree_bytes(msg) == flower_count(fresh(msg))
        pickle.dumps(msg)  # no memoryview chunks left behind
