"""``MeteringGrid``: any Flower ``Grid`` with fedsim's byte meter, phase by phase.

It wraps a Grid (fedsim's ``RayGrid`` or ``InProcessGrid``, Flower's own, or any other) and
delegates every call, so whoever sends through it (fedsim's round loop, or a stock ServerApp
that runs ``Strategy.start``) is metered without knowing it:

- every instruction and every reply is measured in both directions by
  :class:`fedsim.comm.meter.CommMeter`, with the sizes the inner grid already measured where it
  did (the Ray grid sizes instructions for its clock and replies in its actors), and replies an
  engine folded (``engine.fold_replies``) by the receipts of each client's own reply;
- a **phase** is a ``send_and_receive``, or a ``push_messages`` followed by the pulls of its
  replies; a training phase (``train`` messages) is metered in ``meter``, every other phase
  (evaluate, query) in ``side_meter``, so that ``uplink_*`` figures mean the model updates;
- the owner of the rounds closes them: :meth:`end_round_traffic` (the training meter's round),
  :meth:`end_side_traffic` (the other phases' bytes), :meth:`end_clock_round` (the inner grid's
  virtual clock, where it has one) and :meth:`client_traffic` (per-client bytes).

fedsim's round loop (``fedsim/federation.py``) closes a round where its loop does;
:class:`~fedsim.engine.metered_grid.MeteredGrid` closes one per training phase of a foreign
ServerApp, through the hooks :meth:`_phase_opened` and :meth:`_phase_closed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedsim.comm.meter import CommMeter


def message_kind(msg: Message) -> str:
    """``train``, ``evaluate``, ``query`` or another Flower message type, without its suffix."""
    return msg.metadata.message_type.split(".")[0]


def measured_instruction_bytes(grid: Grid, messages: list[Message]) -> list[int | None] | None:
    """Sizes of ``messages`` the grid measured when it pushed them (fedsim's Ray grid), if any."""
    lookup = getattr(grid, "measured_instruction_bytes", None)
    return lookup(messages) if lookup else None


def measured_reply_bytes(grid: Grid, replies: list[Message]) -> list[int | None] | None:
    """Sizes of ``replies`` measured where they were produced (fedsim's Ray actors), if any."""
    lookup = getattr(grid, "measured_reply_bytes", None)
    return lookup(replies) if lookup else None


def meter_uplink(meter: CommMeter, grid: Grid, replies: list[Message]) -> None:
    """Meter replies; ones an engine folded (``fold_counts``) by the receipts of each client's
    own reply (``fold_receipts``), not by the sum that stands for them."""
    folded = getattr(grid, "fold_counts", {}) or {}
    sent = [r for r in replies if id(r) not in folded] if folded else replies
    meter.uplink(sent, measured_reply_bytes(grid, sent),
                 getattr(grid, "fold_receipts", []) if folded else [])


class MeteringGrid(Grid):
    """Delegates to ``inner``; meters every message, training phases apart from the others.

    Args:
        inner: the Grid that carries the messages.
        meter: the byte meter of the training phases (a new :class:`CommMeter` if None).
    """

    def __init__(self, inner: Grid, meter: CommMeter | None = None) -> None:
        self.inner = inner
        self.meter = meter or CommMeter()
        self.side_meter = CommMeter()
        self._pending: dict[str, str] = {}  # pushed, not yet pulled: message id -> kind
        self._phase: list[Message] = []  # replies of the open phase so far
        self._phase_kind = ""

    # -- Grid ABC: delegated --------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return self.inner.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self._open_phase(messages)
        measured = self._measures_instructions()
        if not measured:  # before a ClientApp in this process may consume the records
            self._meter.downlink(messages)
        ids = list(self.inner.push_messages(messages))
        if measured:
            self._meter.downlink(messages, measured_instruction_bytes(self.inner, messages))
        self._pending.update({i: self._phase_kind for i in ids})
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.inner.pull_messages(message_ids))
        self._received(replies)
        for reply in replies:
            self._pending.pop(reply.metadata.reply_to_message_id, None)
        if not self._pending and self._phase_kind:
            self._close_phase()
        return replies

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self._open_phase(messages)
        measured = self._measures_instructions()
        if not measured:
            self._meter.downlink(messages)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        if measured:
            self._meter.downlink(messages, measured_instruction_bytes(self.inner, messages))
        self._received(replies)
        self._close_phase()
        return replies

    def __getattr__(self, name: str) -> Any:
        """Anything else the inner grid offers (``run_while_waiting``, ``describe_actors``)."""
        if name == "inner":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- phases ---------------------------------------------------------------------------
    def _measures_instructions(self) -> bool:
        """Whether the inner grid sizes the instructions it pushes (then the meter takes its
        sizes afterwards; else it measures them before they are delivered)."""
        return hasattr(self.inner, "measured_instruction_bytes")

    def _open_phase(self, messages: list[Message]) -> None:
        kinds = {message_kind(m) for m in messages}
        kind = "train" if "train" in kinds else next(iter(kinds), "")
        self._phase_opened(kind, messages)
        self._phase_kind, self._phase = kind, []

    @property
    def _meter(self) -> CommMeter:
        """The meter of the open phase: training phases' or the others'."""
        return self.meter if self._phase_kind == "train" else self.side_meter

    def _received(self, replies: list[Message]) -> None:
        meter_uplink(self._meter, self.inner, replies)
        self._phase.extend(replies)

    def _close_phase(self) -> None:
        kind, replies = self._phase_kind, self._phase
        self._phase_kind, self._phase = "", []
        self._phase_closed(kind, replies)

    def _phase_opened(self, kind: str, messages: list[Message]) -> None:
        """Hook: a phase of ``kind`` starts with ``messages`` (before they are metered)."""

    def _phase_closed(self, kind: str, replies: list[Message]) -> None:
        """Hook: the phase of ``kind`` ended with ``replies`` (all of them metered)."""

    # -- closing a round ------------------------------------------------------------------
    def end_round_traffic(self) -> dict[str, Any]:
        """The training phases' bytes since the last call (``CommMeter.end_round``'s fields)."""
        return self.meter.end_round()

    def end_side_traffic(self) -> dict[str, int]:
        """The other phases' bytes since the last call: ``evaluate_uplink_bytes`` and
        ``evaluate_downlink_bytes`` (evaluate and query messages)."""
        side = self.side_meter.end_round()
        return {"evaluate_uplink_bytes": side["uplink_bytes"],
                "evaluate_downlink_bytes": side["downlink_bytes"]}

    def end_clock_round(self) -> dict[str, Any]:
        """The inner grid's virtual-clock fields of the round (fedsim's Ray grid), else none."""
        end_round = getattr(self.inner, "end_round", None)
        return end_round() if end_round is not None else {}

    def client_traffic(self, partition_of: Mapping[int, int] | None = None,
                       ) -> dict[str, dict[str, int]]:
        """The last ended training round's bytes of each client by partition id
        (``partition_of``: node id -> partition; default: the inner grid's own map)."""
        if partition_of is None:
            partition_of = getattr(self.inner, "partition_of", {})
        return self.meter.traffic_by_partition(partition_of)
