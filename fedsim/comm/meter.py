"""The byte meter: what actually crossed the Grid, per message, per client, per round.

Sizes are measured from Flower's real serialized form
(docs/design-notes.md#message-size-on-the-wire): a message travels as the set of its deflated
inflatable objects (Message → RecordDict → records → Array → ArrayChunk ≤ 5 MiB), so

    tree bytes = sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())

which is what a SuperNode pushes and pulls; a SuperLink's inbound counter is about
``Σ tree bytes + 645 B`` per reply (the PushMessages proto). HTTP/TLS framing is not counted.
Payload bytes are reported beside them: ``Σ nbytes`` of every array in the message (for a
codec, its ``payload_bytes``), i.e. without npy headers, JSON metadata and object headers.

The meter knows no algorithm. The server-side plumbing calls, once per round::

    meter.downlink(instructions)   # the messages configure_train returned
    meter.uplink(replies)          # the messages aggregate_train receives (errors included)
    row.update(meter.end_round())  # a flat dict of plain ints/floats (None where undefined)

The sum is computed by ``fedsim.comm.tree_size`` to the byte without hashing or copying the
arrays (Flower's own way costs about 0.7 ms per 150 KB reply, the new one about 0.05 ms).
Downlink is measured once per distinct content object (FedAvg puts one RecordDict into all N
instructions; cached by ``id(content)`` within one call) plus each message's own object. Where
Flower's own count is used (unusual objects), the ``_chunks`` memoryviews it caches in every
``Array`` are removed, since they break ``pickle``/``deepcopy`` and double Ray payloads
(docs/design-notes.md#cached-chunks-after-deflating).

Round metric keys returned by :meth:`CommMeter.end_round` (bytes are integers):

``num_params``                        d, parameters of the model (None if unknown)
``downlink_messages``                 instructions sent this round
``downlink_bytes``                    Σ tree bytes of the instructions
``downlink_payload_bytes``            Σ array nbytes of the instructions
``downlink_bytes_per_client``         downlink_bytes / downlink_messages
``uplink_replies``                    replies received (error replies included)
``uplink_error_replies``              replies that carry an error instead of content
``uplink_bytes``                      Σ tree bytes of all replies a client sent (an error reply
                                      the SuperLink or the engine makes for a client that never
                                      answered, ``LINK_MADE_ERRORS``, counts 0)
``uplink_payload_bytes``              Σ array nbytes of all replies
``uplink_bytes_per_client``           mean tree bytes of a reply with content
``uplink_bytes_per_client_max``       largest reply (tree bytes)
``uplink_payload_bytes_per_client``   mean array nbytes of a reply with content
``uplink_bits_per_param``             8 · uplink_bytes_per_client / d  (→ 32 for fp32 FedAvg
                                      as d grows; ~900 B of headers per reply on top)
``uplink_payload_bits_per_param``     8 · uplink_payload_bytes_per_client / d  (1.0 for signs)
``uplink_compression_ratio``          32 / uplink_bits_per_param: fp32 FedAvg payload (32·d bits)
                                      over the measured wire size
``uplink_payload_compression_ratio``  32 / uplink_payload_bits_per_param
``uplink_superlink_bytes_estimate``   uplink_bytes + 645 · replies a client sent
``cumulative_downlink_bytes``         Σ downlink_bytes over the rounds so far
``cumulative_uplink_bytes``           Σ uplink_bytes over the rounds so far
``cumulative_uplink_payload_bytes``   Σ uplink_payload_bytes over the rounds so far
``meter_seconds``                     time spent measuring this round

``summary.json`` (fedsim/results/summary.py) averages ``uplink_bits_per_param`` over rounds and
reads ``cumulative_uplink_bytes``/``cumulative_downlink_bytes``; plots use
``cumulative_uplink_bytes`` as an x-axis. Pass ``num_params`` when the instructions do not carry
the fp32 model in their ``"arrays"`` record (e.g. a 1-bit downlink), else d is inferred wrongly.

Per-client records of the last round: :meth:`CommMeter.client_records`. Uplink needed to reach
a target accuracy: :func:`bytes_to_target` over the round rows (the meter does not see
accuracy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from flwr.app import Array, Message, RecordDict
from flwr.common.constant import ErrorCode

from fedsim.comm.records import array_records
from fedsim.comm.tree_size import content_tree_bytes, message_frame, tree_bytes

#: PushMessages proto bytes per reply (docs/design-notes.md#superlink-traffic-counters)
PUSH_OVERHEAD_BYTES = 645
# Error replies that no client sent: the SuperLink makes them for a node that is unreachable
# or whose reply never came (linkstate/utils.py), and fedsim's Ray engine for a device that was
# unavailable, dropped out or timed out.
LINK_MADE_ERRORS = frozenset({ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE,
                              ErrorCode.NODE_UNAVAILABLE})
#: bits per parameter of an fp32 FedAvg payload, the reference for compression ratios
FP32_BITS = 32


def message_wire_bytes(msg: Message) -> int:
    """Serialized size of ``msg``: Σ ``len(o.deflate())`` over its unique nested objects.

    Exact (``fedsim.comm.tree_size``); leaves the message picklable.
    """
    return tree_bytes(msg)


def array_nbytes(arr: Array) -> int:
    """Raw data bytes of a Flower ``Array`` (``prod(shape) · itemsize``), without decoding."""
    try:
        return int(math.prod(arr.shape)) * np.dtype(arr.dtype).itemsize
    except TypeError:  # a custom stype/dtype: fall back to the stored bytes
        return len(arr.data)


def content_payload_bytes(content: RecordDict) -> int:
    """Σ ``nbytes`` of every array of every ``ArrayRecord`` in ``content``."""
    return sum(array_nbytes(a) for rec in array_records(content).values() for a in rec.values())


def message_payload_bytes(msg: Message) -> int:
    """Σ array ``nbytes`` in ``msg`` (0 for an error reply)."""
    return content_payload_bytes(msg.content) if msg.has_content() else 0


def count_params(content: RecordDict) -> int | None:
    """Elements of the ``"arrays"`` ArrayRecord (else the first ArrayRecord) of ``content``."""
    records = array_records(content)
    if not records:
        return None
    rec = records["arrays"] if "arrays" in records else next(iter(records.values()))
    return sum(int(math.prod(a.shape)) for a in rec.values())


@dataclass
class ClientTraffic:
    """Bytes one node exchanged in one round."""

    node_id: int
    downlink_bytes: int = 0
    downlink_payload_bytes: int = 0
    uplink_bytes: int = 0
    uplink_payload_bytes: int = 0
    uplink_error: bool = False


def _mean(values: Sequence[int]) -> float | None:
    return float(sum(values)) / len(values) if values else None


class CommMeter:
    """Measures instructions and replies of each round and keeps cumulative totals.

    Args:
        num_params: d, the number of model parameters, for bits per parameter and compression
            ratios. If ``None`` it is taken from the first instruction with content (elements of
            its ``"arrays"`` ArrayRecord, else its first ArrayRecord).
    """

    def __init__(self, num_params: int | None = None) -> None:
        self.num_params = num_params
        self.cumulative_downlink_bytes = 0
        self.cumulative_uplink_bytes = 0
        self.cumulative_uplink_payload_bytes = 0
        self.history: list[dict[str, Any]] = []
        self._last_clients: list[ClientTraffic] = []
        self._reset()

    def _reset(self) -> None:
        self._clients: dict[int, ClientTraffic] = {}
        self._down: list[tuple[int, int]] = []  # (wire, payload) per instruction
        self._up: list[tuple[int, int, bool]] = []  # (wire, payload, has content) per reply
        self._seconds = 0.0

    def _client(self, node_id: int) -> ClientTraffic:
        if node_id not in self._clients:
            self._clients[node_id] = ClientTraffic(node_id=int(node_id))
        return self._clients[node_id]

    def downlink(self, messages: Iterable[Message],
                 wire_bytes: Sequence[int | None] | None = None) -> None:
        """Measure instructions (``configure_train``'s output); shared content is measured once.

        ``wire_bytes``: sizes the engine already measured with :func:`message_wire_bytes` (the
        Ray grid, for its clock, while the actors train), in the order of ``messages``; ``None``
        entries are measured here."""
        t0 = time.perf_counter()
        payloads: dict[int, int] = {}  # id(content) -> payload bytes
        trees: dict[int, int] = {}  # id(content) -> serialized bytes, measured when needed
        for index, msg in enumerate(messages):
            known = wire_bytes[index] if wire_bytes is not None else None
            wire = known if known is not None else message_frame(msg)
            payload = 0
            if msg.has_content():
                content = msg.content
                if id(content) not in payloads:
                    payloads[id(content)] = content_payload_bytes(content)
                    if self.num_params is None:
                        self.num_params = count_params(content)
                payload = payloads[id(content)]
                if known is None:  # frame + content tree, the tree once per content
                    if id(content) not in trees:
                        trees[id(content)] = content_tree_bytes(content)
                    wire += trees[id(content)]
            self._down.append((wire, payload))
            rec = self._client(msg.metadata.dst_node_id)
            rec.downlink_bytes += wire
            rec.downlink_payload_bytes += payload
        self._seconds += time.perf_counter() - t0

    def uplink(self, replies: Iterable[Message],
               wire_bytes: Sequence[int | None] | None = None,
               folded: Iterable[tuple[int, int, int]] = ()) -> None:
        """Measure replies (``aggregate_train``'s input, error replies included).

        ``wire_bytes``: sizes already measured with :func:`message_wire_bytes` where the reply
        was produced (e.g. inside a Ray actor), in the order of ``replies``; ``None`` entries
        are measured here. ``folded``: ``(node_id, wire bytes, payload bytes)`` of replies with
        content that an engine summed before they reached the server (``engine.fold_replies``);
        each counts as the message its client sent.
        """
        t0 = time.perf_counter()
        replies = list(replies)
        if wire_bytes is not None and len(wire_bytes) != len(replies):
            raise ValueError(f"{len(wire_bytes)} sizes for {len(replies)} replies")
        for i, msg in enumerate(replies):
            known = wire_bytes[i] if wire_bytes is not None else None
            if msg.has_error() and msg.error.code in LINK_MADE_ERRORS:
                wire = payload = 0  # nothing came up this client's link
            else:
                wire = int(known) if known is not None else message_wire_bytes(msg)
                payload = message_payload_bytes(msg)
            self._count_up(msg.metadata.src_node_id, wire, payload, msg.has_content(),
                           msg.has_error())
        for node_id, wire, payload in folded:
            self._count_up(node_id, wire, payload, True, False)
        self._seconds += time.perf_counter() - t0

    def _count_up(self, node_id: int, wire: int, payload: int, has_content: bool,
                  error: bool) -> None:
        self._up.append((wire, payload, has_content))
        rec = self._client(node_id)
        rec.uplink_bytes += wire
        rec.uplink_payload_bytes += payload
        rec.uplink_error = rec.uplink_error or error

    def end_round(self) -> dict[str, Any]:
        """The round's metrics (keys in the module docstring); resets the per-round state."""
        d = self.num_params
        down_wire = sum(w for w, _ in self._down)
        up_wire = sum(w for w, _, _ in self._up)
        up_payload = sum(p for _, p, _ in self._up)
        ok = [(w, p) for w, p, has in self._up if has]
        per_client = _mean([w for w, _ in ok])
        per_client_payload = _mean([p for _, p in ok])
        bits = 8.0 * per_client / d if d and per_client is not None else None
        payload_bits = 8.0 * per_client_payload / d if d and per_client_payload is not None \
            else None
        self.cumulative_downlink_bytes += down_wire
        self.cumulative_uplink_bytes += up_wire
        self.cumulative_uplink_payload_bytes += up_payload
        row: dict[str, Any] = {
            "num_params": d,
            "downlink_messages": len(self._down),
            "downlink_bytes": down_wire,
            "downlink_payload_bytes": sum(p for _, p in self._down),
            "downlink_bytes_per_client": _mean([w for w, _ in self._down]),
            "uplink_replies": len(self._up),
            "uplink_error_replies": len(self._up) - len(ok),
            "uplink_bytes": up_wire,
            "uplink_payload_bytes": up_payload,
            "uplink_bytes_per_client": per_client,
            "uplink_bytes_per_client_max": max((w for w, _ in ok), default=None),
            "uplink_payload_bytes_per_client": per_client_payload,
            "uplink_bits_per_param": bits,
            "uplink_payload_bits_per_param": payload_bits,
            "uplink_compression_ratio": FP32_BITS / bits if bits else None,
            "uplink_payload_compression_ratio": FP32_BITS / payload_bits if payload_bits
            else None,
            "uplink_superlink_bytes_estimate": up_wire + PUSH_OVERHEAD_BYTES * sum(
                1 for w, _, _ in self._up if w),
            "cumulative_downlink_bytes": self.cumulative_downlink_bytes,
            "cumulative_uplink_bytes": self.cumulative_uplink_bytes,
            "cumulative_uplink_payload_bytes": self.cumulative_uplink_payload_bytes,
            "meter_seconds": self._seconds,
        }
        self.history.append(row)
        self._last_clients = sorted(self._clients.values(), key=lambda c: c.node_id)
        self._reset()
        return row

    def client_records(self) -> list[dict[str, Any]]:
        """Per-node traffic of the last ended round, sorted by node id (plain dicts)."""
        return [asdict(c) for c in self._last_clients]

    def traffic_by_partition(self, partition_of: Mapping[int, int]) -> dict[str, dict[str, int]]:
        """The last ended round's non-zero uplink and downlink bytes of each client, keyed by
        its partition id (``partition_of``: node id -> partition; the node id where unknown),
        as the ``uplink_bytes_by_client`` / ``downlink_bytes_by_client`` row fields."""
        up, down = {}, {}
        for rec in self.client_records():
            pid = str(partition_of.get(rec["node_id"], rec["node_id"]))
            if rec["uplink_bytes"]:
                up[pid] = rec["uplink_bytes"]
            if rec["downlink_bytes"]:
                down[pid] = rec["downlink_bytes"]
        return {"uplink_bytes_by_client": up, "downlink_bytes_by_client": down}


def bytes_to_target(rows: Iterable[dict[str, Any]], target: float,
                    accuracy_key: str = "central_accuracy") -> dict[str, Any]:
    """Round and cumulative bytes at the first row whose ``accuracy_key`` reaches ``target``.

    Returns ``{"rounds_to_target", "uplink_bytes_to_target", "downlink_bytes_to_target"}``,
    all ``None`` if the target is never reached.
    """
    for row in rows:
        acc = row.get(accuracy_key)
        if acc is not None and acc >= target:
            return {"rounds_to_target": row.get("round"),
                    "uplink_bytes_to_target": row.get("cumulative_uplink_bytes"),
                    "downlink_bytes_to_target": row.get("cumulative_downlink_bytes")}
    return {"rounds_to_target": None, "uplink_bytes_to_target": None,
            "downlink_bytes_to_target": None}
