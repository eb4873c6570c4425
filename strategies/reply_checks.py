"""What a reply must be before a strategy aggregates it: each check returns why not, or None.

One set of checks for every server half, and for the engine when it folds replies
(``fedsim.engine.fold``): a reply the check refuses is dropped, counted in the round's
``train_rejected`` / ``evaluate_rejected`` and reported in ``client_problems.jsonl``.
"""

from __future__ import annotations

import math

from flwr.app import Message, MessageType

from fedsim.comm.records import array_records, metric_records
from fedsim.comm.validate import MalformedPayload, check_array
from strategies.vector import Layout

WEIGHT_KEY = "num-examples"


def is_train_reply(msg: Message) -> bool:
    return str(msg.metadata.message_type).startswith(MessageType.TRAIN)


def metrics_reject_reason(msg: Message, weight_key: str = WEIGHT_KEY) -> str | None:
    """A train reply must carry exactly one MetricRecord with a positive finite weight."""
    records = metric_records(msg.content)
    if len(records) != 1:
        return f"expected one MetricRecord, got {len(records)}"
    weight = next(iter(records.values())).get(weight_key)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) \
            or not math.isfinite(weight) or weight <= 0:
        return f"metric {weight_key!r} missing or not a positive number ({weight!r})"
    return None


def evaluate_reject_reason(msg: Message, weight_key: str = WEIGHT_KEY) -> str | None:
    """An evaluate reply must carry exactly one MetricRecord ``metrics`` whose weight is a
    non-negative number (a client with an empty local test split reports 0 examples)."""
    metrics = metric_records(msg.content)
    if len(metrics) != 1 or "metrics" not in metrics:
        return "expected exactly one MetricRecord 'metrics'"
    n = metrics["metrics"].get(weight_key)
    if not isinstance(n, (int, float)) or isinstance(n, bool) or not math.isfinite(n) or n < 0:
        return f"metrics.{weight_key} = {n!r} is not a non-negative number"
    return None


def model_reply_reject_reason(msg: Message, layout: Layout | None, key: str = "arrays") -> \
        str | None:
    """For replies that carry a whole model (FedAvg, FedAdam): one ArrayRecord with the
    global model's keys, shapes and dtypes, all finite (evaluate replies: metrics only)."""
    if not is_train_reply(msg):
        return evaluate_reject_reason(msg)
    if (reason := metrics_reject_reason(msg)) is not None:
        return reason
    records = array_records(msg.content)
    if list(records) != [key]:
        return f"expected one ArrayRecord {key!r}, got {sorted(records)}"
    if layout is None:
        return None
    rec = records[key]
    if list(rec.keys()) != list(layout.keys):
        return f"array keys {list(rec.keys())} differ from the model's {list(layout.keys)}"
    try:
        for name, shape, dtype in zip(layout.keys, layout.shapes, layout.dtypes, strict=True):
            check_array(f"{key}.{name}", rec[name], dtype=dtype, shape=shape)
    except MalformedPayload as err:
        return str(err)
    return None
