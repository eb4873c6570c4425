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
    """Final/best central accuracy, rounds and uplink to the target, and totals.

    When the run was metered (``fedsim.comm.meter``): total and to-target uplink/downlink
    bytes, the round means of bits per parameter (wire and payload), of bytes per client and
    of bytes per round, and the compression ratio against fp32 FedAvg (32 bits per parameter
    per client per round) over the measured wire size (and over the payload alone).
    """
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
    task_rows = [r for r in rows if any(k in r for k in TASK_METRICS)]
    if task_rows:
        summary["final_task_metrics"] = {k: task_rows[-1][k] for k in TASK_METRICS
                                         if k in task_rows[-1]}
    if "cumulative_uplink_bytes" in last:
        summary["total_uplink_bytes"] = last["cumulative_uplink_bytes"]
        summary["total_downlink_bytes"] = last.get("cumulative_downlink_bytes")
        summary["uplink_bytes_to_target"] = hit.get("cumulative_uplink_bytes") if hit else None
        summary["downlink_bytes_to_target"] = (hit.get("cumulative_downlink_bytes") if hit
                                               else None)
        for key in ("uplink_bits_per_param", "uplink_payload_bits_per_param",
                    "uplink_bytes_per_client", "downlink_bytes_per_client", "uplink_bytes",
                    "downlink_bytes"):
            summary[_mean_name(key)] = _mean_of(trained, key)
        # the round mean of bits per parameter keeps its historical name
        summary["uplink_bits_per_param"] = summary.pop("mean_uplink_bits_per_param")
        bits = summary["uplink_bits_per_param"]
        payload_bits = summary["mean_uplink_payload_bits_per_param"]
        # fp32 FedAvg sends 32 bits per parameter per client and round
        summary["compression_ratio_vs_fp32_fedavg"] = FP32_BITS / bits if bits else None
        summary["payload_compression_ratio_vs_fp32_fedavg"] = (FP32_BITS / payload_bits
                                                               if payload_bits else None)
    return summary


FP32_BITS = 32

# headline metrics of the diffusion and DNO task kinds (fedsim/diffusion/*_task.py)
TASK_METRICS = ("sample_quality", "sample_class_coverage", "sample_target_prob",
                "sample_brightness", "sample_zlib_bytes", "sample_out_of_range", "noise_z_sq",
                "noise_prob_reg", "federated_reward")


def _mean_name(key: str) -> str:
    return f"mean_{key}" if key.endswith("per_param") or key.endswith("per_client") \
        else f"mean_{key}_per_round"


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return sum(values) / len(values) if values else None
