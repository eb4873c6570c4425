"""The sweep's tables: ``sweep.csv`` (one row per trial) and ``sweep.md`` (per setting:
mean ± std and min–max over seeds, seeds that reached the target), and the band plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fedsim.config import load_config
from fedsim.results.bands import plot_bands
from fedsim.results.spread import MB, spread_table
from fedsim.results.summary import summarize
from fedsim.results.writer import CONFIG_FILE, SUMMARY_FILE, read_metrics
from fedsim.sweep.manifest import SweepManifest, trial_status
from fedsim.sweep.trials import Trial, trial_dir

CSV_FILE = "sweep.csv"
MD_FILE = "sweep.md"
RESULT_COLUMNS = ("status", "rounds", "final_accuracy", "best_accuracy", "rounds_to_target",
                  "uplink_mb_to_target", "wall_seconds")


def trial_summary(sweep_dir: Path, trial: Trial) -> tuple[dict[str, Any], list[dict]] | None:
    """A trial's summary (summary.json, or computed from the rounds it recorded when it was
    stopped early or is unfinished) and its rows; None before its first round."""
    folder = trial_dir(sweep_dir, trial)
    rows = read_metrics(folder)
    if not rows:
        return None

    if (folder / SUMMARY_FILE).exists():
        return json.loads((folder / SUMMARY_FILE).read_text()), rows
    target = load_config(folder / CONFIG_FILE).eval.target_accuracy
    return summarize(rows, target), rows


def trial_row(manifest: SweepManifest, trial: Trial, status: str,
              summary: dict[str, Any] | None) -> dict[str, Any]:
    s = summary or {}
    up = s.get("uplink_bytes_to_target")
    row: dict[str, Any] = {"trial": trial.index, "setting": trial.setting_label,
                           "config": trial.config_name}
    row.update({key: trial.settings.get(key, "") for key in manifest.grid_keys})
    row.update({"seed": trial.seed, "status": status, "rounds": s.get("rounds"),
                "final_accuracy": s.get("final_accuracy"), "best_accuracy": s.get("best_accuracy"),
                "rounds_to_target": s.get("rounds_to_target"),
                "uplink_mb_to_target": up / MB if up is not None else None,
                "wall_seconds": s.get("wall_seconds")})
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_tables(sweep_dir: Path, manifest: SweepManifest, wall_s: float | None = None,
                 ran: int = 0) -> str:
    """Write sweep.csv, sweep.md and the band plots from the trial folders; return sweep.md.
    ``wall_s``: the wall time of this invocation, which ran ``ran`` trials."""
    sweep_dir = Path(sweep_dir)
    rows, groups, curves = [], {}, {}
    target = None
    for trial in manifest.trials:
        status = trial_status(sweep_dir, trial)
        found = trial_summary(sweep_dir, trial)
        summary, metrics = found if found else (None, [])
        rows.append(trial_row(manifest, trial, status, summary))
        if status == "finished" and summary is not None:
            groups.setdefault(trial.setting_label, []).append(summary)
            curves.setdefault(trial.setting_label, []).append(metrics)
            target = summary.get("target_accuracy", target)
    columns = list(rows[0]) if rows else []
    with open(sweep_dir / CSV_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[_cell(r[c]) for c in columns] for r in rows])
    done = sum(1 for r in rows if r["status"] == "finished")
    stopped = sum(1 for r in rows if r["status"] == "stopped")
    target_line = f", target accuracy {target:.0%}" if target is not None else ""
    md = (f"# sweep {manifest.name}\n\n{done} of {len(rows)} trials finished"
          + (f", {stopped} stopped early (ASHA; not in the table)" if stopped else "")
          + f"{target_line}; mean ± std (min–max) over seeds.\n\n" + spread_table(groups))
    if wall_s is not None and ran:
        inside = sum(r["wall_seconds"] or 0.0 for r in rows if r["status"] == "finished")
        md += (f"\nThis invocation of fedsim sweep took {wall_s:.1f} s of wall time for {ran} "
               f"trials to run; the federations of the {done} finished trials took "
               f"{inside:.1f} s together (their summary wall_seconds: no Python start, data or "
               "engine loading).\n")
    (sweep_dir / MD_FILE).write_text(md)
    plot_bands(curves, sweep_dir, target)
    return md


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
