"""Summary figures of a run, computed from its round records."""

from __future__ import annotations

from typing import Any


def first_round_reaching(rows: list[dict[str, Any]], key: str, target: float) -> dict | None:
    """The first round record whose ``key`` is at least ``target`` (None if never)."""
    for row in rows:
        value = row.get(key)
        if value is not None and value >= target:
            return row
    return None


def summarize(rows: list[dict[str, Any]], target_accuracy: float) -> dict[str, Any]:
    """Final/best central accuracy, rounds and uplink to the target, and totals."""
    evaluated = [r for r in rows if r.get("central_accuracy") is not None]
    final = evaluated[-1] if evaluated else {}
    best = max(evaluated, key=lambda r: r["central_accuracy"]) if evaluated else {}
    hit = first_round_reaching(rows, "central_accuracy", target_accuracy)
    last = rows[-1] if rows else {}
    trained = [r for r in rows if r.get("round", 0) > 0]
    summary: dict[str, Any] = {
        "rounds": last.get("round", 0),
        "final_accuracy": final.get("central_accuracy"),
        "final_loss": final.get("central_loss"),
        "best_accuracy": best.get("central_accuracy"),
        "best_round": best.get("round"),
        "target_accuracy": target_accuracy,
        "rounds_to_target": hit["round"] if hit else None,
        "wall_seconds": last.get("wall_seconds"),
        "train_failures": sum(r.get("train_failures", 0) for r in trained),
        "train_rejected": sum(r.get("train_rejected", 0) for r in trained),
    }
    if "cumulative_uplink_bytes" in last:
        summary["total_uplink_bytes"] = last["cumulative_uplink_bytes"]
        summary["total_downlink_bytes"] = last.get("cumulative_downlink_bytes")
        summary["uplink_bytes_to_target"] = hit.get("cumulative_uplink_bytes") if hit else None
        per_round = [r["uplink_bits_per_param"] for r in trained
                     if r.get("uplink_bits_per_param") is not None]
        summary["uplink_bits_per_param"] = (sum(per_round) / len(per_round)
                                            if per_round else None)
    return summary
