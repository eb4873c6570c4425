"""Whether any client contributed to a finished run, read from its metrics.jsonl.

A run in which every train reply failed or was dropped ends at its initial model; it must
not look like a finished experiment. ``fedsim run`` exits with :data:`EXIT_NO_CONTRIBUTION`
and :func:`no_contribution_message` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.results.writer import PROBLEMS_FILE, read_metrics

EXIT_NO_CONTRIBUTION = 4


def contributed_replies(rows: list[dict[str, Any]]) -> int | None:
    """Train replies aggregated over the run's rounds (None: the rows do not count them)."""
    counted = [r["train_replies"] for r in rows
               if r.get("round", 0) > 0 and isinstance(r.get("train_replies"), (int, float))]
    return int(sum(counted)) if counted else None


def no_contribution_message(run_dir: Path) -> str | None:
    """Why the run at ``run_dir`` has no result (every train reply of every round failed or
    was dropped), or None when at least one reply was aggregated (or none were counted)."""
    rows = read_metrics(Path(run_dir))
    if contributed_replies(rows) != 0:
        return None
    trained = [r for r in rows if r.get("round", 0) > 0]
    failed = sum(int(r.get("train_failures", 0) or 0) for r in trained)
    rejected = sum(int(r.get("train_rejected", 0) or 0) for r in trained)
    return (f"no client contributed to this run: in {len(trained)} round(s) every train reply "
            f"failed ({failed}) or was rejected ({rejected}), so the model is the initial one; "
            f"why each was dropped is in {Path(run_dir) / PROBLEMS_FILE}")
