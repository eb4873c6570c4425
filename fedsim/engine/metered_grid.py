"""``MeteredGrid``: any Flower ``Grid`` with fedsim's byte meter, clock rounds and results folder.

It wraps a Grid (fedsim's ``RayGrid`` or ``InProcessGrid``, or any other) and delegates every
call, so a stock ServerApp that runs ``Strategy.start`` is metered without knowing it:

- every instruction and every reply is measured in both directions by
  :class:`fedsim.comm.meter.CommMeter` (with the sizes the inner grid already measured, where it
  did: the Ray grid sizes instructions for its clock and replies in its actors);
- a **round** opens with each training phase (a ``send_and_receive``, or a ``push_messages``
  followed by pulls, of ``train`` messages) and closes when the next one starts or the app ends:
  one row of ``metrics.jsonl`` then holds the round number (the instructions' ``server-round``),
  the meter's byte counts of the training phase (and per-client bytes by partition id) and
  those of the round's other phases (``evaluate_uplink_bytes``, ``evaluate_downlink_bytes``),
  the train replies' metrics averaged with weights ``num-examples`` (``train_*``), the
  following evaluate phase's (``federated_*``), central metrics where a
  :class:`~fedsim.engine.strategy_log.StrategyLog` saw them (``central_*``), the inner grid's
  virtual-clock fields (``end_round``) and the wall seconds;
- :meth:`finish` writes ``summary.json`` and the plots, as a fedsim run does.

Row 0 is the initial model (with the traffic of anything sent before the first training phase).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fedsim.comm.meter import CommMeter
from fedsim.results.plots import plot_runs
from fedsim.results.summary import summarize
from fedsim.results.writer import ResultsWriter, read_metrics

WEIGHT_KEY = "num-examples"
METRIC_PREFIXES = {"train": ("train_", "train-"), "evaluate": ("eval_", "eval-", "evaluate_",
                                                               "evaluate-")}
ROW_PREFIXES = {"train": "train_", "evaluate": "federated_", "central": "central_"}


def message_kind(msg: Message) -> str:
    """``train``, ``evaluate``, ``query`` or another Flower message type, without its suffix."""
    return msg.metadata.message_type.split(".")[0]


def server_round(messages: list[Message]) -> int | None:
    """The ``server-round`` a strategy put in the instructions' ConfigRecord (None if none)."""
    for msg in messages:
        if not msg.has_content():
            continue
        for record in msg.content.config_records.values():
            if "server-round" in record:
                return int(record["server-round"])
    return None


def metric_name(key: str, kind: str) -> str:
    """A reply metric's column: its own prefix (``train_loss``, ``eval-acc``) dropped, dashes
    made underscores, the phase's prefix put in front (``train_loss``, ``federated_acc``)."""
    for prefix in METRIC_PREFIXES.get(kind, ()):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
            break
    return ROW_PREFIXES[kind] + key.replace("-", "_")


def weighted_metrics(replies: list[Message], kind: str) -> dict[str, float]:
    """Means of the replies' scalar metrics weighted by ``num-examples`` (1 where absent), as
    Flower's strategies aggregate them; replies with errors are left out."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for reply in replies:
        if not reply.has_content():
            continue
        for record in reply.content.metric_records.values():
            weight = record.get(WEIGHT_KEY, 1)
            weight = float(weight) if isinstance(weight, int | float) else 1.0
            for key, value in record.items():
                if key == WEIGHT_KEY or isinstance(value, list | bool):
                    continue
                sums[key] = sums.get(key, 0.0) + weight * float(value)
                weights[key] = weights.get(key, 0.0) + weight
    return {metric_name(k, kind): sums[k] / weights[k] for k in sums if weights[k] > 0}


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


class MeteredGrid(Grid):
    """Delegates to ``inner``; meters every message and writes one row per training round.

    Args:
        inner: the Grid that carries the messages.
        run_dir: the results folder (``metrics.jsonl``, ``summary.json``, plots).
        name: the run's name in ``summary.json`` and the plots.
        meter: the byte meter of the training phases (a new :class:`CommMeter` if None);
            every other phase (evaluate, query) is metered apart, in ``side_meter``, so that
            a row's ``uplink_*`` figures mean what they mean in a fedsim run (the model
            updates), beside ``evaluate_uplink_bytes`` and ``evaluate_downlink_bytes``.
    """

    def __init__(self, inner: Grid, run_dir: Path, name: str = "flower-app",
                 meter: CommMeter | None = None) -> None:
        self.inner = inner
        self.run_dir = Path(run_dir)
        self.name = name
        self.meter = meter or CommMeter()
        self.side_meter = CommMeter()
        self.writer = ResultsWriter(self.run_dir)
        self.rounds_closed = 0
        self._start = time.monotonic()
        self._row: dict[str, Any] = {"round": 0}
        self._round_start = self._start
        self._sent = False  # anything metered in the open row
        self._pending: dict[str, str] = {}  # pushed, not yet pulled: message id -> kind
        self._phase: list[Message] = []  # replies of the pushed phase so far
        self._phase_kind = ""
        self._closed = False

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

    # -- phases and rounds ----------------------------------------------------------------
    def _measures_instructions(self) -> bool:
        """Whether the inner grid sizes the instructions it pushes (then the meter takes its
        sizes afterwards; else it measures them before they are delivered)."""
        return hasattr(self.inner, "measured_instruction_bytes")

    def _open_phase(self, messages: list[Message]) -> None:
        kinds = {message_kind(m) for m in messages}
        kind = "train" if "train" in kinds else next(iter(kinds), "")
        if kind == "train":
            self._close_row()
            rnd = server_round(messages)
            self._row = {"round": rnd if rnd is not None else self.rounds_closed + 1}
            self._round_start = time.monotonic()
        self._sent = self._sent or bool(messages)
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
        if kind not in ("train", "evaluate"):
            return
        self._row.update(weighted_metrics(replies, kind))
        self._row[f"{kind}_failures"] = self._row.get(f"{kind}_failures", 0) + sum(
            r.has_error() for r in replies)
        self._row[f"{kind}_replies"] = self._row.get(f"{kind}_replies", 0) + len(replies)
        self._report_problems(replies, kind)

    def _report_problems(self, replies: list[Message], kind: str) -> None:
        partition_of = getattr(self.inner, "partition_of", {})
        self.writer.write_problems([
            {"round": self._row["round"], "phase": kind, "kind": "error",
             "partition": partition_of.get(r.metadata.src_node_id, r.metadata.src_node_id),
             "code": r.error.code, "reason": r.error.reason}
            for r in replies if r.has_error()])

    def add_central(self, server_round: int, metrics: dict[str, Any]) -> None:
        """Central (server-side) evaluation results of ``server_round`` (``central_*``)."""
        if server_round == self._row["round"]:
            self._row.update({metric_name(k, "central"): float(v) for k, v in metrics.items()
                              if isinstance(v, int | float) and not isinstance(v, bool)})

    def _client_traffic(self) -> dict[str, dict[str, int]]:
        return self.meter.traffic_by_partition(getattr(self.inner, "partition_of", {}))

    def _close_row(self) -> None:
        """Write the open row: the meter's round, per-client bytes, the clock, wall times."""
        row, now = self._row, time.monotonic()
        if row["round"] > 0 or self._sent:
            row.update(self.meter.end_round())
            row.update(self._client_traffic())
            side = self.side_meter.end_round()
            row["evaluate_uplink_bytes"] = side["uplink_bytes"]
            row["evaluate_downlink_bytes"] = side["downlink_bytes"]
        end_round = getattr(self.inner, "end_round", None)
        if row["round"] > 0 and end_round is not None:
            row.update(end_round())
        if row["round"] > 0:
            row["round_seconds"] = now - self._round_start
            self.rounds_closed += 1
        row["wall_seconds"] = now - self._start
        self.writer.write_round(row)
        self._sent = False

    # -- the end --------------------------------------------------------------------------
    def finish(self, target_accuracy: float | None = None, plots: bool = True,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the last round; write ``summary.json`` (and plots); return the summary."""
        if self._closed:
            raise RuntimeError("MeteredGrid.finish was called twice")
        self._closed = True
        try:
            self._close_row()
        finally:
            self.writer.close()
        rows = read_metrics(self.run_dir)
        target = float("inf") if target_accuracy is None else target_accuracy
        summary = {"name": self.name, **summarize(rows, target), **(extra or {}),
                   "total_evaluate_uplink_bytes": self.side_meter.cumulative_uplink_bytes,
                   "total_evaluate_downlink_bytes": self.side_meter.cumulative_downlink_bytes}
        if target_accuracy is None:
            summary["target_accuracy"] = None
        last = rows[-1] if rows else {}
        for prefix in ("train_", "federated_"):
            final = {k: v for k, v in last.items()
                     if k.startswith(prefix) and not k.endswith(("_failures", "_replies"))}
            if final:
                summary[f"final_{prefix}metrics"] = final
        self.writer.write_summary(summary)
        if plots:
            plot_runs({self.name: rows}, self.run_dir, target_accuracy)
        return summary

