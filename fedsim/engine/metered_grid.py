"""``MeteredGrid``: any Flower ``Grid`` with fedsim's byte meter, clock rounds and results folder.

A :class:`~fedsim.engine.metering_grid.MeteringGrid` (which meters every message, training
phases apart from the others) that closes a round per training phase, so a stock ServerApp
that runs ``Strategy.start`` gets a results folder like a fedsim run without knowing it:

- a **round** opens with each training phase (a ``send_and_receive``, or a ``push_messages``
  followed by pulls, of ``train`` messages) and closes when the next one starts or the app ends:
  one row of ``metrics.jsonl`` then holds the round number (the instructions' ``server-round``),
  the meter's byte counts of the training phase (and per-client bytes by partition id) and
  those of the round's other phases (``evaluate_uplink_bytes``, ``evaluate_downlink_bytes``),
  the train replies' metrics averaged with weights ``num-examples`` (``train_*``), the
  following evaluate phase's (``federated_*``), central metrics where a
  :class:`~fedsim.engine.strategy_log.StrategyLog` saw them (``central_*``), the inner grid's
  virtual-clock fields (``end_round``) and the wall seconds;
- :meth:`finish` writes ``summary.json`` and the plots, as a fedsim run does;
- every ``checkpoint_every`` rounds, the model the round's training instructions carried and
  the rows so far, and at the end the last model sent (:mod:`fedsim.app_checkpoint`).

Row 0 is the initial model (with the traffic of anything sent before the first training phase).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from fedsim.app_checkpoint import (
    APP_CHECKPOINT_FILE,
    FINAL_MODEL_FILE,
    SentModel,
    save_app_model,
    sent_model,
)
from fedsim.comm.meter import CommMeter
from fedsim.engine.metering_grid import MeteringGrid
from fedsim.results.plots import plot_runs
from fedsim.results.summary import summarize
from fedsim.results.writer import ResultsWriter, read_metrics

WEIGHT_KEY = "num-examples"
METRIC_PREFIXES = {"train": ("train_", "train-"), "evaluate": ("eval_", "eval-", "evaluate_",
                                                               "evaluate-")}
ROW_PREFIXES = {"train": "train_", "evaluate": "federated_", "central": "central_"}


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


class MeteredGrid(MeteringGrid):
    """A :class:`MeteringGrid` that writes one row per training round, and checkpoints.

    Args:
        inner: the Grid that carries the messages.
        run_dir: the results folder (``metrics.jsonl``, ``summary.json``, plots).
        name: the run's name in ``summary.json`` and the plots.
        meter: the byte meter of the training phases (a new :class:`CommMeter` if None);
            every other phase (evaluate, query) is metered apart, in ``side_meter``, so that
            a row's ``uplink_*`` figures mean what they mean in a fedsim run (the model
            updates), beside ``evaluate_uplink_bytes`` and ``evaluate_downlink_bytes``.
        checkpoint_every: save the model the training instructions of every k-th round
            carried, with the rows so far, and the last model sent at the end (0: never).
    """

    def __init__(self, inner: Grid, run_dir: Path, name: str = "flower-app",
                 meter: CommMeter | None = None, checkpoint_every: int = 0) -> None:
        super().__init__(inner, meter)
        self.checkpoint_every = checkpoint_every
        self._round_model: SentModel | None = None  # what this round's training sent
        self._last_model: SentModel | None = None  # the last arrays any phase sent
        self.run_dir = Path(run_dir)
        self.name = name
        self.writer = ResultsWriter(self.run_dir)
        self.rounds_closed = 0
        self._start = time.monotonic()
        self._row: dict[str, Any] = {"round": 0}
        self._round_start = self._start
        self._sent = False  # anything metered in the open row
        self._closed = False

    # -- phases and rounds ----------------------------------------------------------------
    def _phase_opened(self, kind: str, messages: list[Message]) -> None:
        if kind == "train":
            self._close_row()
            rnd = server_round(messages)
            self._row = {"round": rnd if rnd is not None else self.rounds_closed + 1}
            self._round_start = time.monotonic()
        self._sent = self._sent or bool(messages)
        if self.checkpoint_every:
            model = sent_model(messages, self._row["round"], kind)
            self._last_model = model or self._last_model
            if kind == "train":
                self._round_model = model

    def _phase_closed(self, kind: str, replies: list[Message]) -> None:
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

    def _close_row(self) -> None:
        """Write the open row: the meter's round, per-client bytes, the clock, wall times."""
        row, now = self._row, time.monotonic()
        if row["round"] > 0 or self._sent:
            row.update(self.end_round_traffic())
            row.update(self.client_traffic())
            row.update(self.end_side_traffic())
        if row["round"] > 0:
            row.update(self.end_clock_round())
        if row["round"] > 0:
            row["round_seconds"] = now - self._round_start
            self.rounds_closed += 1
        row["wall_seconds"] = now - self._start
        self.writer.write_round(row)
        self._sent = False
        every = self.checkpoint_every
        if every and row["round"] > 0 and row["round"] % every == 0 and self._round_model:
            save_app_model(self.run_dir / APP_CHECKPOINT_FILE, self._round_model,
                           read_metrics(self.run_dir), final=False)

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
        if self.checkpoint_every and self._last_model is not None:
            save_app_model(self.run_dir / FINAL_MODEL_FILE, self._last_model, rows, final=True)
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

