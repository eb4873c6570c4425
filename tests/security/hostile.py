"""Hostile replies for the tests in this folder: a ClientApp wrapper that lets chosen clients
send a malformed or malicious reply instead of (or made from) their honest one.

A *kind* is a function ``(instruction, honest reply) -> reply`` (it may raise: the engine then
sends the error reply Flower sends for a failing ClientApp). ``HostileApp`` applies a kind to
the replies of one partition in one round of one phase; everything else is the real app.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

Kind = Callable[[Message, Message], Message]


def _reply(ins: Message, records: dict) -> Message:
    return Message(RecordDict(records), reply_to=ins)


def _records(reply: Message) -> dict:
    return dict(reply.content.items())


def _metrics(reply: Message) -> dict:
    return dict(reply.content["metrics"].items())


def with_metrics(**changes: object) -> Kind:
    """The honest reply with metrics changed (a value of None removes the metric)."""
    def kind(ins: Message, reply: Message) -> Message:
        metrics = {k: v for k, v in {**_metrics(reply), **changes}.items() if v is not None}
        return _reply(ins, {**_records(reply), "metrics": MetricRecord(metrics)})
    return kind


def renamed(old: str, new: str) -> Kind:
    def kind(ins: Message, reply: Message) -> Message:
        records = _records(reply)
        records[new] = records.pop(old)
        return _reply(ins, records)
    return kind


def without(name: str) -> Kind:
    def kind(ins: Message, reply: Message) -> Message:
        return _reply(ins, {k: v for k, v in _records(reply).items() if k != name})
    return kind


def added(name: str, record: object) -> Kind:
    def kind(ins: Message, reply: Message) -> Message:
        return _reply(ins, {**_records(reply), name: record})
    return kind


def metrics_as_strings(ins: Message, reply: Message) -> Message:
    """The metrics as a ConfigRecord of strings under the MetricRecord's name."""
    strings = ConfigRecord({k: str(v) for k, v in _metrics(reply).items()})
    return _reply(ins, {**_records(reply), "metrics": strings})


def with_arrays(change: Callable[[dict[str, np.ndarray]], dict[str, object]],
                record: str = "arrays") -> Kind:
    """The honest reply with the ArrayRecord ``record`` changed by ``change`` (numpy in,
    numpy arrays or flwr Arrays out)."""
    def kind(ins: Message, reply: Message) -> Message:
        arrays = {k: a.numpy().copy() for k, a in reply.content[record].items()}
        out = change(arrays)
        new = ArrayRecord({k: v if isinstance(v, Array) else Array(np.ascontiguousarray(v))
                           for k, v in out.items()})
        return _reply(ins, {**_records(reply), record: new})
    return kind


def first(fn: Callable[[np.ndarray], object]) -> Callable[[dict], dict]:
    """Apply ``fn`` to the first array only."""
    def change(arrays: dict) -> dict:
        key = next(iter(arrays))
        return {**arrays, key: fn(arrays[key])}
    return change


def set_flat(index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def fn(x: np.ndarray) -> np.ndarray:
        x.reshape(-1)[index] = value
        return x
    return fn


def truncated_bytes(x: np.ndarray) -> Array:
    """The array's serialized bytes cut in half (a truncated transfer)."""
    full = Array(np.ascontiguousarray(x))
    return Array(dtype=full.dtype, shape=tuple(full.shape), stype=full.stype,
                 data=full.data[: len(full.data) // 2])


def fails(ins: Message, reply: Message) -> Message:
    raise RuntimeError("hostile client raises")


class HostileApp:
    """The real ClientApp, except the replies named in ``plan``:
    ``{(message type, partition, round or None): kind}`` (round None: every round)."""

    def __init__(self, app: Callable[[Message, Context], Message],
                 plan: dict[tuple[str, int, int | None], Kind]) -> None:
        self.app, self.plan = app, plan
        self.queries: dict[int, Message] = {}  # each node's query instruction

    def __call__(self, msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        mtype = str(msg.metadata.message_type)
        if mtype == MessageType.QUERY:
            self.queries[pid] = msg
        rnd = int(msg.content["config"]["server-round"]) \
            if "config" in msg.content and "server-round" in msg.content["config"] else None
        kind = self.plan.get((mtype, pid, rnd)) or self.plan.get((mtype, pid, None))
        if kind is None:
            return self.app(msg, context)
        if kind is reply_to_other_message:
            return Message(self.app(msg, context).content, reply_to=self.queries[pid])
        return kind(msg, self.app(msg, context))


def reply_to_other_message(ins: Message, reply: Message) -> Message:
    """Marker kind: the honest content, sent in reply to this node's query instruction
    (``HostileApp`` builds it: only it holds that instruction)."""
    raise AssertionError("handled by HostileApp")


def query_reply(pid: object) -> Kind:
    return lambda ins, reply: _reply(ins, {"node": ConfigRecord({"partition-id": pid})})


HUGE = 1.7e308  # the largest float64 is 1.797e308: the 1.8e308 parses as inf
assert math.isfinite(HUGE) and math.isinf(float("1.8e308"))
