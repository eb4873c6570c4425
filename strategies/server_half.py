"""Plumbing every fedsim strategy shares on the server, written once.

:class:`FedsimStrategyMixin` goes before a Flower strategy in the MRO
(``class FedAvgStrategy(FedsimStrategyMixin, flwr FedAvg)``) and adds, without touching the
algorithm:

- deterministic client sampling: Flower samples node ids with Python's global ``random``, and
  node ids are random per run, so the mixin re-draws the same number of clients by
  *partition id* from a generator seeded with (seed, round, phase);
- replies in partition order before aggregation (sums in a fixed order: bit-identical runs);
- missing nodes do not stall the run: Flower's samplers wait forever for
  ``min_available_nodes``, so one deployed SuperNode that died would hold every later round;
  the mixin waits ``node_wait_s`` for it, then runs the round with the nodes that are there;
- reply screening: error replies, replies that ``reject_reason`` refuses (malformed
  payloads, ``strategies/reply_checks.py``) and replies whose metric names differ from the
  round's majority are dropped and counted in ``round_report``, and why each was dropped is
  kept in ``reply_problems`` (with the partition, or the node id where the node is unknown)
  for the results folder; the round continues with the rest, and a round left with no reply
  is reported. Evaluate replies of clients without local test rows (0 examples) are left out
  of the mean and counted (``evaluate_empty``).
- bounded influence (``[robust]``, ``strategies/robust.py``): a train reply's weight is clamped
  to its partition's cap and a reply whose update norm exceeds the bound is dropped, both
  counted (``train_clamped``, ``train_rejected``) and reported like any dropped reply.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedsim.comm.npy import view
from fedsim.comm.records import array_records, metric_records
from strategies.reply_checks import (
    WEIGHT_KEY,
    evaluate_reject_reason,
    evaluated_nothing,
    metric_key_outliers,
    model_reply_reject_reason,
)
from strategies.robust import update_norm
from strategies.vector import Layout

log = logging.getLogger("fedsim")


def keep_model_dtypes(arrays: ArrayRecord | None, layout: Layout | None) -> ArrayRecord | None:
    """Cast aggregated arrays back to the global model's dtypes.

    Flower's FedOpt family computes its step in float64 (numpy promotes), which would silently
    turn a float32 model into float64 after one round and double the downlink.
    """
    if arrays is None or layout is None:
        return arrays
    dtypes = dict(zip(layout.keys, layout.dtypes, strict=True))
    if all(key not in dtypes or view(a).dtype == dtypes[key] for key, a in arrays.items()):
        return arrays
    out = {}
    for key, array in arrays.items():
        value = view(array)
        if key in dtypes and value.dtype != dtypes[key]:
            value = value.astype(dtypes[key])
        out[key] = Array(np.ascontiguousarray(value))
    return ArrayRecord(out)


class FedsimStrategyMixin:
    """Deterministic sampling, ordered replies and reply screening for a Flower strategy."""

    seed: int = 0
    layout: Layout | None = None  # the global model's keys, shapes, dtypes (configure_train)
    node_wait_s: float = 300.0  # how long a round waits for missing nodes (train.node_wait_s)
    node_partitions: dict[int, int]
    round_report: dict[str, float]
    reply_problems: list[dict[str, Any]]  # this round's dropped replies: kind and reason
    _sent: list[Message]  # this phase's instructions, till its replies are screened
    # bounded influence ([robust], set by strategies.robust.configure_robustness)
    weight_caps: dict[int, float] = {}  # noqa: RUF012 (read-only default) partition -> cap
    default_weight_cap: float | None = None  # cap of a reply whose partition has none
    max_update_norm: float = 0.0  # 0: no bound

    def bind_nodes(self, node_partitions: dict[int, int], seed: int) -> None:
        """Tell the strategy which partition each node holds (learned by a query round)."""
        self.node_partitions = dict(node_partitions)
        self.seed = seed
        self.round_report = {}
        self.reply_problems = []

    # ----------------------------------------------------------------------------- sampling
    def _pick_nodes(self, count: int, phase: int) -> list[int]:
        available = set(self._grid.get_node_ids())
        by_partition = sorted((p, n) for n, p in self.node_partitions.items() if n in available)
        count = min(count, len(by_partition))
        rng = np.random.default_rng([self.seed, self._round, phase])
        chosen = np.sort(rng.choice(len(by_partition), size=count, replace=False))
        return [by_partition[i][1] for i in chosen]

    def _construct_messages(self, record: RecordDict, node_ids: list[int],
                            message_type: str) -> Iterable[Message]:
        if getattr(self, "node_partitions", None):
            phase = 0 if message_type.startswith("train") else 1
            node_ids = self._pick_nodes(len(node_ids), phase)
        return super()._construct_messages(record, node_ids, message_type)  # type: ignore[misc]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._round, self._grid = server_round, grid
        self.round_report, self.reply_problems = {}, []
        self.layout = Layout.of(arrays)
        self._guard_reference = {k: view(a) for k, a in arrays.items()}
        with self._without_missing_nodes(grid, "train"):
            self._sent = list(super().configure_train(  # type: ignore[misc]
                server_round, arrays, config, grid))
        return self._sent

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        self._round, self._grid = server_round, grid
        with self._without_missing_nodes(grid, "evaluate"):
            self._sent = list(super().configure_evaluate(  # type: ignore[misc]
                server_round, arrays, config, grid))
        return self._sent

    @contextlib.contextmanager
    def _without_missing_nodes(self, grid: Grid, phase: str) -> Iterator[None]:
        """Wait up to ``node_wait_s`` for the nodes Flower's sampler requires; if some stay
        away, lower its minimums to the nodes that are there for this call only."""
        need = int(getattr(self, "min_available_nodes", 0))
        deadline = time.monotonic() + self.node_wait_s
        while (have := len(list(grid.get_node_ids()))) < need and \
                time.monotonic() < deadline:
            time.sleep(1.0)
        if have >= need:
            yield
            return
        log.warning("round %d: only %d of the %d nodes needed are connected after %.0f s; "
                    "the %s phase goes on with them", self._round, have, need,
                    self.node_wait_s, phase)
        names = ("min_available_nodes", "min_train_nodes", "min_evaluate_nodes")
        saved = {k: getattr(self, k) for k in names if hasattr(self, k)}
        for key, value in saved.items():
            setattr(self, key, min(value, max(have, 1)))
        try:
            yield
        finally:
            for key, value in saved.items():
                setattr(self, key, value)

    # ------------------------------------------------------------------------------ replies
    def node_of(self, msg: Message) -> int:
        """The node a reply is about: its sender, or, for an error reply the SuperLink wrote
        for a node that did not answer (sent from the SuperLink's own id), the instruction's
        destination."""
        src = msg.metadata.src_node_id
        if src in (getattr(self, "node_partitions", None) or {}):
            return src
        asked = msg.metadata.reply_to_message_id
        for sent in getattr(self, "_sent", ()):
            if sent.metadata.message_id == asked:
                return sent.metadata.dst_node_id
        return src

    def partition_of(self, msg: Message) -> int:
        """The partition of the reply's node (-1 where the node is unknown)."""
        return (getattr(self, "node_partitions", None) or {}).get(self.node_of(msg), -1)

    def reject_reason(self, msg: Message) -> str | None:
        """Why a reply must not be aggregated (None: it is fine).

        The default suits strategies whose uplink is the whole model: one ArrayRecord
        ``arrays`` with the global model's keys, shapes and dtypes, all finite, and one
        MetricRecord with a positive ``num-examples``. Strategies with encoded uplinks override
        it.
        """
        return model_reply_reject_reason(msg, self.layout)

    def screen_replies(self, replies: Iterable[Message], phase: str) -> list[Message]:
        """Ordered, well-formed replies; failures and rejections are counted per phase."""
        kept: list[Message] = []
        failed = rejected = empty = 0
        replies = list(replies)
        for msg in sorted(replies, key=self.partition_of):
            if msg.has_error():
                failed += 1
                self._problem(msg, phase, "failed", str(msg.error.reason))
            elif (reason := self._schema_problem(msg, phase)) is not None \
                    or (phase == "train" and (reason := self.guard_reason(msg)) is not None):
                rejected += 1
                self._problem(msg, phase, "rejected", reason)
            elif phase == "evaluate" and evaluated_nothing(msg):
                empty += 1  # no local test rows: nothing to average, nothing wrong
            else:
                kept.append(msg)
        outliers = metric_key_outliers(kept)
        for i, reason in outliers.items():
            rejected += 1
            self._problem(kept[i], phase, "rejected", reason)
        kept = [m for i, m in enumerate(kept) if i not in outliers]
        self._sent = []
        if phase == "train":
            self.round_report["train_clamped"] = sum(self.clamp_weight(m) for m in kept)
            self._guard_reference = None  # only screening needs it (and no checkpoint does)
        self.round_report[f"{phase}_failures"] = failed
        self.round_report[f"{phase}_rejected"] = rejected
        if phase == "evaluate":
            self.round_report["evaluate_empty"] = empty
        folded = getattr(getattr(self, "_grid", None), "fold_counts", None) or {}
        self.round_report[f"{phase}_replies"] = sum(folded.get(id(m), 1) for m in kept)
        self._warn_if_nothing_left(phase, len(replies), failed, rejected, empty, kept)
        return kept

    def _schema_problem(self, msg: Message, phase: str) -> str | None:
        """Why a reply of ``phase`` fails the reply schema (a reader that raises on it is
        reported as such, never as a traceback that ends the run)."""
        try:
            return self.reject_reason(msg) if phase == "train" else evaluate_reject_reason(msg)
        except Exception as err:  # noqa: BLE001 - a hostile reply may break any reader
            return f"unreadable reply ({type(err).__name__}: {err})"

    def _warn_if_nothing_left(self, phase: str, total: int, failed: int, rejected: int,
                              empty: int, kept: list[Message]) -> None:
        if kept:
            return
        rnd = getattr(self, "_round", 0)
        if empty and not failed and not rejected:
            log.warning("round %d: none of the %d clients asked to evaluate has local test "
                        "rows (task.local_test_fraction too small for its partition); no "
                        "federated metrics this round", rnd, empty)
            return
        what = "the model is unchanged" if phase == "train" else "no federated metrics"
        log.warning("round %d: no %s reply was usable (%d sent: %d failed, %d rejected, "
                    "%d without test rows); %s this round", rnd, phase, total, failed,
                    rejected, empty, what)

    # ---------------------------------------------------------------- bounded influence
    def update_payload(self, msg: Message) -> tuple[dict[str, np.ndarray],
                                                     dict[str, np.ndarray] | None] | None:
        """The part of a (screened) train reply whose size the norm bound limits, and what it
        is measured from: by default the model change of a whole-model reply (its ``arrays``
        against the global model); None where a reply has no unbounded float payload (sign
        and integer codecs bound every value). Strategies with other float payloads override
        it (FedLion: its momentum)."""
        records = array_records(msg.content)
        reference = getattr(self, "_guard_reference", None)
        if "arrays" not in records or reference is None:
            return None
        arrays = {k: view(a) for k, a in records["arrays"].items()}
        if list(arrays) != list(reference) or any(
                a.dtype.kind != "f" or a.shape != reference[k].shape for k, a in arrays.items()):
            return None  # an encoded payload, not a model
        return arrays, reference

    def guard_reason(self, msg: Message) -> str | None:
        """Why a well-formed train reply is still refused: its update norm exceeds
        ``robust.max_update_norm`` (None: it is within the bound, or there is none)."""
        if not self.max_update_norm:
            return None
        payload = self.update_payload(msg)
        if payload is None:
            return None
        norm = update_norm(*payload)
        if not norm <= self.max_update_norm:
            return (f"update L2 norm {norm:.4g} exceeds robust.max_update_norm = "
                    f"{self.max_update_norm:g}")
        return None

    def clamp_weight(self, msg: Message, weight_key: str = WEIGHT_KEY) -> bool:
        """Clamp a kept train reply's weight to its partition's cap (``robust.weight_bound``);
        True, and a ``clamped`` problem reported, when it claimed more."""
        folded = getattr(getattr(self, "_grid", None), "fold_counts", None) or {}
        if id(msg) in folded:  # a sum of several clients' replies, each checked in the actor
            return False
        cap = self.weight_caps.get(self.partition_of(msg), self.default_weight_cap)
        records = metric_records(msg.content)
        if cap is None or len(records) != 1:
            return False
        record = next(iter(records.values()))
        claimed = record.get(weight_key)
        if not isinstance(claimed, (int, float)) or claimed <= cap:
            return False
        record[weight_key] = int(cap)
        self._problem(msg, "train", "clamped",
                      f"{weight_key} = {claimed:.4g} exceeds the partition's {int(cap)} "
                      f"training examples (robust.weight_bound); clamped to {int(cap)}")
        return True

    def _problem(self, msg: Message, phase: str, kind: str, reason: str) -> None:
        pid = self.partition_of(msg)
        self.reply_problems.append({"round": self._round, "phase": phase, "kind": kind,
                                    "partition": pid if pid >= 0 else None,
                                    "node": int(self.node_of(msg)), "reason": reason})

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[
            ArrayRecord | None, MetricRecord | None]:
        kept = self.screen_replies(replies, "train")
        arrays, metrics = super().aggregate_train(server_round, kept)  # type: ignore[misc]
        return keep_model_dtypes(arrays, self.layout), metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Any:
        kept = self.screen_replies(replies, "evaluate")
        return super().aggregate_evaluate(server_round, kept)  # type: ignore[misc]
