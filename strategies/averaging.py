"""Flower's FedAvg server step with its weighted averages computed from npy views.

Flower's ``FedAvg.aggregate_train`` averages the replies' ArrayRecords with
``aggregate_arrayrecords``, which decodes every array of every reply with ``np.load`` (about
0.1 ms of header parsing per array), and their metrics with ``aggregate_metricrecords``, which
rebuilds each reply's typed record views. :class:`ViewAveragingFedAvg` does the same arithmetic,
in the same order and precision, on zero-copy views (``fedsim.comm.npy``) and plain dicts, so
its results are bit for bit Flower's.

With ``robust_aggregation`` set to ``"median"`` or ``"trimmed-mean"`` (``robust.aggregation``) the
model is the coordinate-wise median or trimmed mean of the replies instead
(``strategies/robust.py``; Flower's FedMedian and FedTrimmedAvg). Subclasses of Flower's FedOpt
family that put this class after theirs in the MRO (FedAdam) get the robust aggregate as
their pseudo-gradient's mean model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from fedsim.comm.npy import record_from_numpy, view
from fedsim.comm.records import array_records, metric_records
from strategies.robust import robust_combine


def weighted_average(records: list[RecordDict], weight_key: str) -> ArrayRecord:
    """``flwr.serverapp.strategy.strategy_utils.aggregate_arrayrecords``, same bits.

    Each reply's weight is ``w_i / sum(w)`` from its (only) MetricRecord; the arrays of all its
    ArrayRecords are accumulated as ``sum_i x_i * weight_i`` in reply order.
    """
    factors = _weight_factors(records, weight_key)
    acc: dict[str, np.ndarray] = {}
    scratch: dict[str, np.ndarray] = {}  # x_i * weight_i, without a new array per reply
    for record, factor in zip(records, factors, strict=True):
        for arrays in array_records(record).values():
            for key, value in arrays.items():
                if key not in acc:
                    acc[key] = view(value) * factor
                    continue
                x = view(value)
                term = scratch.get(key)
                if term is None or term.shape != x.shape or term.dtype != acc[key].dtype:
                    term = scratch[key] = np.empty_like(acc[key])
                np.multiply(x, factor, out=term)
                acc[key] += term
    return record_from_numpy({k: np.asarray(v) for k, v in acc.items()})


def robust_aggregate(records: list[RecordDict], aggregation: str, beta: float) -> ArrayRecord:
    """The coordinate-wise median or trimmed mean of the replies' (only) ArrayRecords,
    unweighted, array by array in the first reply's key order (Flower's FedMedian /
    FedTrimmedAvg)."""
    models = [next(iter(array_records(r).values())) for r in records]
    return record_from_numpy({key: robust_combine([view(m[key]) for m in models], aggregation,
                                                  beta) for key in models[0]})


def _weight_factors(records: list[RecordDict], weight_key: str) -> list[float]:
    """``w_i / sum(w)``, each ``w_i`` from the reply's (only) MetricRecord."""
    weights = [next(iter(metric_records(r).values()))[weight_key] for r in records]
    total = sum(weights)
    return [w / total for w in weights]


def weighted_metrics(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """``flwr.serverapp.strategy.strategy_utils.aggregate_metricrecords``, same values: every
    metric but the weight, ``sum_i m_i * weight_i`` in reply order (lists element-wise)."""
    factors = _weight_factors(records, weight_key)
    out: dict[str, Any] = {}
    for record, factor in zip(records, factors, strict=True):
        for metrics in metric_records(record).values():
            for key, value in metrics.items():
                if key == weight_key:
                    continue
                if key not in out:
                    out[key] = [v * factor for v in value] if isinstance(value, list) \
                        else value * factor
                elif isinstance(value, list):
                    out[key] = [c + v * factor for c, v in zip(out[key], value, strict=True)]
                else:
                    out[key] = out[key] + value * factor
    return MetricRecord(out)


class ViewAveragingFedAvg(FedAvg):
    """Flower's ``FedAvg`` whose ``aggregate_train`` decodes replies without ``np.load``.

    A subclass whose replies were already screened for the structure Flower's consistency
    check tests (one ArrayRecord, one MetricRecord holding the weight; fedsim's
    ``ModelRepliesMixin``) sets ``replies_screened = True`` and skips that second pass.
    """

    replies_screened = False
    robust_aggregation = "mean"  # robust.aggregation: mean, median or trimmed-mean
    trim_fraction = 0.1  # robust.trim_fraction (beta of the trimmed mean)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[
            ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True,
                                               validate=not self.replies_screened)
        if not valid:
            return None, None
        contents = [msg.content for msg in valid]
        aggregate_metrics = self.train_metrics_aggr_fn
        if aggregate_metrics is aggregate_metricrecords:  # Flower's default: same values
            aggregate_metrics = weighted_metrics
        mean = self.robust_aggregation == "mean"
        arrays = (weighted_average(contents, self.weighted_by_key) if mean
                  else robust_aggregate(contents, self.robust_aggregation, self.trim_fraction))
        return arrays, aggregate_metrics(contents, self.weighted_by_key)
