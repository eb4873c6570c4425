"""Mean ± standard deviation and min–max over seeds, as one Markdown table per group of runs.

Shared by ``fedsim sweep`` (sweep.md) and ``fedsim compare`` (runs that differ only in seed).
The standard deviation is the sample one (n - 1); rounds and uplink to the target are over the
seeds that reached it, whose count is its own column.
"""

from __future__ import annotations

import math
from typing import Any

MB = 1e6

# (summary key, column, format, divisor)
SPREAD_COLUMNS = (
    ("final_accuracy", "final acc", ".3f", 1.0),
    ("best_accuracy", "best acc", ".3f", 1.0),
    ("rounds_to_target", "rounds to target", ".1f", 1.0),
    ("uplink_bytes_to_target", "uplink MB to target", ".3f", MB),
    ("wall_seconds", "wall s", ".1f", 1.0),
)


def spread(values: list[float]) -> tuple[float, float | None, float, float] | None:
    """(mean, sample std or None for one value, min, max); None for no values."""
    if not values:
        return None
    mean = sum(values) / len(values)
    std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
           if len(values) > 1 else None)
    return mean, std, min(values), max(values)


def format_spread(values: list[float], spec: str) -> str:
    """``mean ± std (min–max)``; one value alone; ``-`` for none."""
    stats = spread(values)
    if stats is None:
        return "-"
    mean, std, low, high = stats
    if std is None:
        return format(mean, spec)
    return f"{mean:{spec}} ± {std:{spec}} ({low:{spec}}–{high:{spec}})"


def column_values(summaries: list[dict[str, Any]], key: str, divisor: float) -> list[float]:
    return [s[key] / divisor for s in summaries if s.get(key) is not None]


def spread_table(groups: dict[str, list[dict[str, Any]]]) -> str:
    """One row per group of run summaries: seeds, seeds that reached the target, and each
    column of ``SPREAD_COLUMNS`` as mean ± std (min–max)."""
    header = ["setting", "seeds", "reached target"] + [c for _, c, _, _ in SPREAD_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, summaries in groups.items():
        reached = sum(1 for s in summaries if s.get("rounds_to_target") is not None)
        cells = [label, str(len(summaries)), f"{reached}/{len(summaries)}"]
        cells += [format_spread(column_values(summaries, key, div), spec)
                  for key, _, spec, div in SPREAD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
