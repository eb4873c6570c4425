"""Wire accounting on the ServerApp side of a deployment, to cross-check the SuperLink.

:class:`CountingGrid` wraps the Grid the ServerApp is given and adds up the serialized size
(``tree_bytes``, docs/design-notes.md#message-size-on-the-wire) of every instruction it pushes
and every reply it pulls, by message type. The SuperLink's own per-run counters
(``flwr ls --format json``) count the same objects plus the protobuf envelopes of each push/pull, so

    inbound  ≈ Σ reply tree bytes  + Σ envelope           (PushMessages + PullMessages protos)
    outbound ≈ Σ instruction tree bytes + a per-message envelope (measured, see docs)

The envelope of a reply is recomputed here exactly as the SuperNode builds it (the
PushMessagesRequest with the content-free message and its object tree, plus the
PullMessagesRequest that fetched the instruction): ~500–700 B, growing with the number of
objects (arrays) in the reply; docs/design-notes.md#superlink-traffic-counters gives ~645 B.

Replies the SuperLink makes up itself (a node that stopped heartbeating) never crossed the
network; they are counted as failures, not as bytes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid

INBOUND_OVERHEAD_PER_REPLY = 645  # docs/design-notes.md#superlink-traffic-counters
RELATIVE_TOLERANCE = 0.01
WIRE_FILE = "wire.json"


def tree_bytes(msg: Message) -> int:
    """Bytes of the message's object tree as it crosses the Fleet API (pre-HTTP framing)."""
    try:
        from fedsim.comm.meter import message_wire_bytes  # the platform meter, when present
    except ImportError:
        from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

        return sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())
    return int(message_wire_bytes(msg))


def envelope_bytes(reply: Message) -> int:
    """Protobuf bytes the SuperLink counts for a reply beyond its object tree.

    The SuperNode's PushMessagesRequest (node, content-free message, object tree, ClientApp
    runtime) plus the PullMessagesRequest that fetched the instruction.
    """
    from flwr.app.message.message import remove_content_from_message
    from flwr.common.serde import message_to_proto
    from flwr.proto.fleet_pb2 import PullMessagesRequest, PushMessagesRequest
    from flwr.proto.node_pb2 import Node
    from flwr.supercore.inflatable.inflatable_object import get_object_tree

    node = Node(node_id=reply.metadata.src_node_id)
    bare = remove_content_from_message(reply) if reply.has_content() else reply
    push = PushMessagesRequest(node=node, messages_list=[message_to_proto(bare)],
                               message_object_trees=[get_object_tree(reply)],
                               clientapp_runtime_list=[1.0])
    return push.ByteSize() + PullMessagesRequest(node=node).ByteSize()


def cross_check(tree_bytes_up: int, replies: int, inbound_bytes: int,
                envelopes: int | None = None) -> dict[str, Any]:
    """Compare metered uplink tree bytes with the SuperLink's inbound counter.

    They agree when ``0 <= inbound - tree <= 1 % of tree + per-message overhead``, the
    overhead being the replies' envelopes as computed by :func:`envelope_bytes` when given,
    else the documented 645 B per reply. ``predicted_inbound_bytes`` (tree + envelopes) and
    its error are reported beside.
    """
    extra = inbound_bytes - tree_bytes_up
    overhead = INBOUND_OVERHEAD_PER_REPLY * replies if envelopes is None else envelopes
    allowed = RELATIVE_TOLERANCE * tree_bytes_up + overhead
    out = {"metered_uplink_tree_bytes": tree_bytes_up, "replies": replies,
           "superlink_inbound_bytes": inbound_bytes, "difference_bytes": extra,
           "overhead_per_reply": extra / replies if replies else None,
           "documented_overhead_bytes": INBOUND_OVERHEAD_PER_REPLY * replies,
           "agrees_documented_645": 0 <= extra <= RELATIVE_TOLERANCE * tree_bytes_up
           + INBOUND_OVERHEAD_PER_REPLY * replies,
           "allowed_difference_bytes": allowed, "agrees": 0 <= extra <= allowed}
    if envelopes is not None:
        predicted = tree_bytes_up + envelopes
        out.update({"envelope_bytes": envelopes, "predicted_inbound_bytes": predicted,
                    "prediction_error_bytes": inbound_bytes - predicted,
                    "prediction_error_relative": (inbound_bytes - predicted) / inbound_bytes
                    if inbound_bytes else None})
    return out


class CountingGrid(Grid):
    """A Grid that forwards everything to ``inner`` and counts bytes per direction and type."""

    def __init__(self, inner: Grid) -> None:
        self._inner = inner
        self.down: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # type -> [msgs, bytes]
        self.up: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # + envelope bytes
        self.failed: dict[str, int] = defaultdict(int)  # type -> error replies from the link
        self.failed_bytes: dict[str, int] = defaultdict(int)
        self.client_errors: dict[str, int] = defaultdict(int)

    # -- accounting -------------------------------------------------------------------------
    def _sent(self, messages: list[Message]) -> None:
        for m in messages:
            entry = self.down[m.metadata.message_type]
            entry[0] += 1
            entry[1] += tree_bytes(m)

    def _received(self, replies: list[Message]) -> None:
        for r in replies:
            kind = r.metadata.message_type
            if r.metadata.src_node_id == SUPERLINK_NODE_ID:
                self.failed[kind] += 1  # made up by the SuperLink (node unavailable, expired)
                self.failed_bytes[kind] += tree_bytes(r)
                continue
            if r.has_error():
                self.client_errors[kind] += 1
            entry = self.up[kind]
            entry[0] += 1
            entry[1] += tree_bytes(r)
            entry[2] += envelope_bytes(r)

    def totals(self) -> dict[str, Any]:
        """Per-type and total message counts and tree bytes, both directions."""
        up_msgs = sum(v[0] for v in self.up.values())
        up_bytes = sum(v[1] for v in self.up.values())
        return {
            "downlink": {k: {"messages": v[0], "tree_bytes": v[1]} for k, v in self.down.items()},
            "uplink": {k: {"messages": v[0], "tree_bytes": v[1], "envelope_bytes": v[2]}
                       for k, v in self.up.items()},
            "downlink_messages": sum(v[0] for v in self.down.values()),
            "downlink_tree_bytes": sum(v[1] for v in self.down.values()),
            "uplink_messages": up_msgs,
            "uplink_tree_bytes": up_bytes,
            "uplink_envelope_bytes": sum(v[2] for v in self.up.values()),
            "unavailable_replies": dict(self.failed),
            "unavailable_reply_tree_bytes": dict(self.failed_bytes),
            "client_error_replies": dict(self.client_errors),
        }

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.totals(), indent=2) + "\n")

    # -- Grid -------------------------------------------------------------------------------
    def set_run(self, run) -> None:  # noqa: ANN001
        self._inner.set_run(run)

    @property
    def run(self):  # noqa: ANN201
        return self._inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self._inner.get_node_ids()

    def get_nodes(self):  # noqa: ANN201
        return self._inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        ids = self._inner.push_messages(messages)
        self._sent(messages)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self._inner.pull_messages(message_ids))
        self._received(replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self._inner.send_and_receive(messages, timeout=timeout))
        self._sent(messages)
        self._received(replies)
        return replies
