"""``fedsim compare``: several runs overlaid in plots and side by side in one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsim.results.plots import plot_runs
from fedsim.results.summary import summarize
from fedsim.results.writer import SUMMARY_FILE, read_metrics

COLUMNS = ("run", "strategy", "final acc", "best acc", "rounds to target", "uplink MB to target",
           "bits/param/round", "x vs fp32 FedAvg", "total uplink MB")


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def load_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run's summary (recomputed if summary.json is missing) and its round records."""
    rows = read_metrics(run_dir)
    if not rows:
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: not a fedsim results folder")
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.exists() else summarize(rows, 0.9)
    return summary, rows


def compare_runs(run_dirs: list[Path], out_dir: Path) -> str:
    """Write overlaid plots into ``out_dir`` and return a Markdown table of the runs."""
    runs: dict[str, list[dict[str, Any]]] = {}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    target = None
    for run_dir in run_dirs:
        summary, rows = load_run(run_dir)
        label = summary.get("name") or run_dir.name
        if label in runs:
            label = f"{label} ({run_dir.name})"
        runs[label] = rows
        target = summary.get("target_accuracy", target)
        to_target = summary.get("uplink_bytes_to_target")
        total = summary.get("total_uplink_bytes")
        lines.append("| " + " | ".join([
            label, _fmt(summary.get("strategy")), _fmt(summary.get("final_accuracy"), ".3f"),
            _fmt(summary.get("best_accuracy"), ".3f"), _fmt(summary.get("rounds_to_target")),
            _fmt(to_target / 1e6 if to_target is not None else None, ".3f"),
            _fmt(summary.get("uplink_bits_per_param"), ".2f"),
            _fmt(summary.get("compression_ratio_vs_fp32_fedavg"), ".2f"),
            _fmt(total / 1e6 if total is not None else None, ".3f"),
        ]) + " |")
    plot_runs(runs, out_dir, target)
    table = "\n".join(lines) + "\n"
    (out_dir / "comparison.md").write_text(table)
    return table
