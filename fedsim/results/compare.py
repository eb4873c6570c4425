"""``fedsim compare``: several runs overlaid in plots and side by side in one table.

Runs that differ only in ``seed`` (their config.toml equal but for seed, name and output)
are also grouped: one row per group with mean ± std (min–max) over the seeds, and band plots.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from fedsim.results.bands import plot_bands
from fedsim.results.plots import plot_runs
from fedsim.results.spread import spread_table
from fedsim.results.summary import summarize
from fedsim.results.writer import CONFIG_FILE, SUMMARY_FILE, read_metrics

# config parts that do not change what a run computes besides its seed
NOT_THE_SETTING = ("seed", "name", "output")

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
    seed_groups: dict[str, tuple[str, list[dict[str, Any]], list[list[dict[str, Any]]]]] = {}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    target = None
    for run_dir in run_dirs:
        summary, rows = load_run(run_dir)
        label = summary.get("name") or run_dir.name
        if label in runs:
            label = f"{label} ({run_dir.name})"
        runs[label] = rows
        key = setting_key(run_dir)
        group = seed_groups.setdefault(key, (summary.get("name") or run_dir.name, [], []))
        group[1].append(summary)
        group[2].append(rows)
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
    if any(len(summaries) > 1 for _, summaries, _ in seed_groups.values()):
        labels = _group_labels([label for label, _, _ in seed_groups.values()])
        table += ("\nOver seeds (runs that differ only in seed): mean ± std (min–max)\n\n"
                  + spread_table({lab: g[1] for lab, g in zip(labels, seed_groups.values(),
                                                               strict=True)}))
        plot_bands({lab: g[2] for lab, g in zip(labels, seed_groups.values(), strict=True)},
                   out_dir, target)
    (out_dir / "comparison.md").write_text(table)
    return table


def setting_key(run_dir: Path) -> str:
    """What a run computes but for its seed: its resolved config without seed, name and
    output (a folder without config.toml is a group of its own)."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        return f"folder:{run_dir.resolve()}"
    data = tomllib.loads(path.read_text())
    return json.dumps({k: v for k, v in data.items() if k not in NOT_THE_SETTING},
                      sort_keys=True)


def _group_labels(names: list[str]) -> list[str]:
    """Group labels, numbered where two groups share a run name."""
    return [f"{name} ({names[:i].count(name) + 1})" if names.count(name) > 1 else name
            for i, name in enumerate(names)]
