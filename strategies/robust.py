"""Bounded influence of one reply, and robust aggregation (docs/robustness.md).

Guards (``[robust]``, applied by ``FedsimStrategyMixin.guard_reason`` to every strategy):

- weight bound: a train reply's ``num-examples`` above what its partition can hold (the size
  of the partition's training split, computed from the task settings, or a fixed cap) is
  clamped to the cap, counted in ``train_clamped`` and reported in ``client_problems.jsonl``;
- norm bound: a train reply whose update has an L2 norm above ``max_update_norm`` is dropped,
  counted in ``train_rejected`` and reported. The update is the model change ``x_i - x`` for
  whole-model replies (fedavg, fedadam) and the float payload a strategy names otherwise
  (FedLion's momentum); sign and integer payloads are bounded by their codec and not checked.

Robust aggregation (``robust.aggregation``, for whole-model replies): the coordinate-wise
median and the coordinate-wise beta-trimmed mean of Yin et al. 2018, "Byzantine-Robust
Distributed Learning: Towards Optimal Statistical Rates", arXiv 1803.01498 (Definitions 1
and 2), with the semantics of Flower's ``FedMedian`` and ``FedTrimmedAvg``: unweighted,
per array, ``np.median`` over the replies, and ``int(beta * n)`` values cut at each end.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from flwr.app import Message

from fedsim.comm.npy import view
from fedsim.comm.records import array_records, metric_records
from fedsim.config.schema import ExperimentConfig, RobustConfig
from fedsim.engine.fold import ReplyFold
from strategies.reply_checks import WEIGHT_KEY, model_reply_reject_reason
from strategies.vector import Layout


def coordinate_median(stack: np.ndarray) -> np.ndarray:
    """Coordinate-wise median over axis 0 (Yin et al. 2018, Def. 1; Flower's FedMedian)."""
    return np.asarray(np.median(stack, axis=0))


def trimmed_mean(stack: np.ndarray, beta: float) -> np.ndarray:
    """Coordinate-wise beta-trimmed mean over axis 0 (Yin et al. 2018, Def. 2): per
    coordinate, drop the ``int(beta * n)`` largest and smallest of the n values and average
    the rest (Flower's ``fedtrimmedavg.trim_mean``)."""
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"robust.trim_fraction = {beta} must lie in [0, 0.5)")
    n = stack.shape[0]
    low = int(beta * n)
    high = n - low
    part = np.partition(stack, (low, high - 1), axis=0)
    return np.asarray(np.mean(part[low:high], axis=0))


def robust_combine(layers: list[np.ndarray], aggregation: str, beta: float) -> np.ndarray:
    """One array of the aggregate from the replies' copies of it."""
    stack = np.stack(layers)
    if aggregation == "median":
        return coordinate_median(stack)
    if aggregation == "trimmed-mean":
        return trimmed_mean(stack, beta)
    raise ValueError(f"robust.aggregation = {aggregation!r} is not a robust rule")


def update_norm(arrays: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None) -> float:
    """L2 norm of ``arrays - reference`` over all arrays (of ``arrays`` if no reference), in
    float64 so that values near the float32 maximum do not overflow."""
    total = 0.0
    for key, value in arrays.items():
        x = np.asarray(value, dtype=np.float64)
        if reference is not None:
            x = x - np.asarray(reference[key], dtype=np.float64)
        total += float(np.dot(x.reshape(-1), x.reshape(-1)))
    return float(np.sqrt(total))


def partition_train_sizes(cfg: ExperimentConfig) -> dict[int, int]:
    """Examples in each partition's training split, as the clients split it."""
    from fedsim.tasks.arrays import local_test_rows
    from fedsim.tasks.datasets import data_source

    source = data_source(cfg.task, cfg.seed)
    sizes = {}
    for pid in range(cfg.task.num_clients):
        n = source.partition_size(pid)
        sizes[pid] = n - local_test_rows(n, cfg.task.local_test_fraction)
    return sizes


def weight_caps(cfg: ExperimentConfig) -> tuple[dict[int, float], float | None]:
    """(cap by partition id, cap of any other reply) as ``cfg.robust.weight_bound`` asks."""
    robust: RobustConfig = cfg.robust
    if robust.weight_bound == "fixed":
        return {}, float(robust.max_examples)
    if robust.weight_bound == "partition":
        return {p: float(n) for p, n in partition_train_sizes(cfg).items()}, None
    return {}, None


def configure_robustness(strategy: object, cfg: ExperimentConfig) -> None:
    """Give a built server half its guards and, where it aggregates whole models, its rule
    (plain attributes, so that they travel in a checkpoint like the rest of its state)."""
    caps, default_cap = weight_caps(cfg)
    strategy.weight_caps = caps  # type: ignore[attr-defined]
    strategy.default_weight_cap = default_cap  # type: ignore[attr-defined]
    strategy.max_update_norm = cfg.robust.max_update_norm  # type: ignore[attr-defined]
    if hasattr(strategy, "robust_aggregation"):  # not ``aggregation``: sign strategies'
        strategy.robust_aggregation = cfg.robust.aggregation  # own vote rule has that name  # type: ignore[attr-defined]
        strategy.trim_fraction = cfg.robust.trim_fraction  # type: ignore[attr-defined]


def fold_reject_reason(msg: Message, layout: Layout | None, caps: dict[int, float],
                       default_cap: float | None, max_norm: float,
                       reference: dict[str, np.ndarray] | None) -> str | None:
    """The reply check of an engine that folds replies (``engine.fold_replies``): besides the
    model check, a reply that the guards would clamp or drop is not folded into a sum but
    sent back on its own, so that the server's guards see it (``caps`` by node id)."""
    if (reason := model_reply_reject_reason(msg, layout)) is not None:
        return reason
    weight = next(iter(metric_records(msg.content).values()))[WEIGHT_KEY]
    cap = caps.get(msg.metadata.src_node_id, default_cap)
    if cap is not None and weight > cap:
        return f"{WEIGHT_KEY} = {weight:.4g} above the partition's cap: left to the server"
    if max_norm and reference is not None:
        arrays = {k: view(a) for k, a in array_records(msg.content)["arrays"].items()}
        norm = update_norm(arrays, reference)
        if not (math.isfinite(norm) and norm <= max_norm):
            return f"update norm {norm:.4g} above robust.max_update_norm: left to the server"
    return None


class GuardedFoldMixin:
    """For whole-model strategies that an engine may fold: the fold's reply check keeps every
    reply the ``[robust]`` guards would touch out of the sums (goes before
    ``ModelRepliesMixin`` in the MRO)."""

    def reply_fold(self) -> ReplyFold:
        partitions = getattr(self, "node_partitions", {}) or {}
        caps = {node: self.weight_caps[pid] for node, pid in partitions.items()  # type: ignore[attr-defined]
                if pid in self.weight_caps}  # type: ignore[attr-defined]
        reference = getattr(self, "_guard_reference", None)
        return ReplyFold(self.weighted_by_key, functools.partial(  # type: ignore[attr-defined]
            fold_reject_reason, layout=self.layout, caps=caps,  # type: ignore[attr-defined]
            default_cap=self.default_weight_cap,  # type: ignore[attr-defined]
            max_norm=self.max_update_norm,  # type: ignore[attr-defined]
            reference={k: np.asarray(v) for k, v in reference.items()}
            if reference is not None and self.max_update_norm else None))  # type: ignore[attr-defined]
