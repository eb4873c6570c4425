"""What a reply must be before a strategy aggregates it: each check returns why not, or None.

One set of checks for every server half, and for the engine when it folds replies
(``fedsim.engine.fold``): a reply the check refuses is dropped, counted in the round's
``train_rejected`` / ``evaluate_rejected`` and reported in ``client_problems.jsonl``.

The schema every reply shares (docs/reply-checks.md):

- exactly one MetricRecord, named ``metrics``;
- its weight ``num-examples`` an integer count (an int, or a float holding one) of at most
  :data:`MAX_EXAMPLES`: positive in a train reply, 0 allowed in an evaluate reply (a client
  with an empty local test split, excluded from the mean);
- every other metric a finite number (no list, no string, no NaN/Inf) whose name is
  letters, digits, ``_``, ``-`` or ``.`` (at most 64 characters);
- train replies: the ArrayRecords the strategy expects (checked by the strategy).

Replies that pass one by one must still agree on their metric names
(:func:`metric_key_outliers`): Flower's averaging refuses a round whose replies differ, so
the replies whose names differ from the round's majority are dropped instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from flwr.app import Message, MessageType, MetricRecord

from fedsim.comm.records import array_records, metric_records
from fedsim.comm.validate import MalformedPayload, check_array
from strategies.vector import Layout

WEIGHT_KEY = "num-examples"
METRICS_RECORD = "metrics"
MAX_EXAMPLES = 2**53  # float64 holds every integer count up to here exactly
METRIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def is_train_reply(msg: Message) -> bool:
    return str(msg.metadata.message_type).startswith(MessageType.TRAIN)


def _shown(value: object) -> str:
    """``repr`` of a value from a reply, cut short (a reply may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count_problem(name: str, value: object, *, zero_allowed: bool) -> str | None:
    """Why ``value`` is not an example count (None: it is one)."""
    low = "a non-negative" if zero_allowed else "a positive"
    if value is None:
        return f"metric {name!r} is missing ({low} integer count)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"metric {name!r} = {_shown(value)} is not a number ({low} integer count)"
    if not math.isfinite(value) or value != int(value) or value < 0 \
            or (value == 0 and not zero_allowed) or value > MAX_EXAMPLES:
        return (f"metric {name!r} = {_shown(value)} is not {low} integer count of at most "
                f"2**53")
    return None


def metric_values_problem(record: MetricRecord, weight_key: str = WEIGHT_KEY) -> str | None:
    """Why a MetricRecord's names or values are unusable: an odd name, a list, a string, a
    non-finite value (None: every metric is a finite number under a plain name)."""
    for key, value in record.items():
        if not isinstance(key, str) or not METRIC_NAME.fullmatch(key):
            return (f"metric name {_shown(key)} is not allowed (letters, digits, '_', '-', "
                    f"'.'; at most 64 characters)")
        if key == weight_key:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return (f"metric {key!r} = {_shown(value)} is a {type(value).__name__}, "
                    f"expected one finite number")
        if not math.isfinite(value):
            return f"metric {key!r} = {value!r} is not finite"
    return None


def _the_metrics(msg: Message) -> MetricRecord | str:
    """The reply's one MetricRecord ``metrics``, or why there is not exactly that."""
    records = metric_records(msg.content)
    if list(records) != [METRICS_RECORD]:
        return (f"expected exactly one MetricRecord {METRICS_RECORD!r}, got "
                f"{sorted(records) or 'none'}")
    return records[METRICS_RECORD]


def metrics_reject_reason(msg: Message, weight_key: str = WEIGHT_KEY) -> str | None:
    """A train reply must carry one MetricRecord ``metrics`` with a positive integer weight
    and finite scalar metrics."""
    record = _the_metrics(msg)
    if isinstance(record, str):
        return record
    if (reason := count_problem(weight_key, record.get(weight_key), zero_allowed=False)):
        return reason
    return metric_values_problem(record, weight_key)


def evaluate_reject_reason(msg: Message, weight_key: str = WEIGHT_KEY) -> str | None:
    """An evaluate reply must carry one MetricRecord ``metrics`` whose weight is a
    non-negative integer count (a client with an empty local test split reports 0 examples
    and nothing else need be usable: it is left out of the mean) and finite scalars."""
    record = _the_metrics(msg)
    if isinstance(record, str):
        return record
    if (reason := count_problem(weight_key, record.get(weight_key), zero_allowed=True)):
        return reason
    if record[weight_key] == 0:
        return None
    return metric_values_problem(record, weight_key)


def evaluated_nothing(msg: Message, weight_key: str = WEIGHT_KEY) -> bool:
    """A well-formed evaluate reply from a client with no local test rows."""
    return metric_records(msg.content)[METRICS_RECORD][weight_key] == 0


def metric_key_outliers(replies: Sequence[Message]) -> dict[int, str]:
    """Replies (by position) whose metric names differ from the round's majority, with why.

    The majority is the most common set of names; between equally common sets, the one of
    the first reply in partition order that holds one of them."""
    names = [frozenset(metric_records(m.content).get(METRICS_RECORD, {}).keys())
             for m in replies]
    if len(set(names)) <= 1:
        return {}
    counts = Counter(names)
    top = max(counts.values())
    usual = next(n for n in names if counts[n] == top)
    out = {}
    for i, n in enumerate(names):
        if n != usual:
            extra, missing = sorted(n - usual), sorted(usual - n)
            parts = ([f"extra {', '.join(map(_shown, extra))}"] if extra else []) + \
                ([f"missing {', '.join(map(_shown, missing))}"] if missing else [])
            out[i] = (f"metric names differ from the other replies' ({'; '.join(parts)}; "
                      f"expected {sorted(usual)})")
    return out


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
