"""Helpers of the sweep tests: tiny sweep settings and a fake trial folder."""

from __future__ import annotations

from pathlib import Path

from fedsim.config import load_config, save_config
from fedsim.results.summary import summarize
from fedsim.results.writer import ResultsWriter

QUICKSTART = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")
# quickstart-sized trials: a few rounds, a checkpoint every round, no federated evaluation
TINY = ["--set", "train.rounds=3", "--set", "eval.federated_every=0", "--set",
        "output.checkpoint_every=1", "--set", "output.plots=false", "--set",
        "eval.target_accuracy=0.6"]


def fake_run(folder: Path, accuracies: list[float], uplink_per_round: int = 1000,
             finished: bool = True, target: float = 0.5, overrides: tuple = ()) -> dict:
    """A results folder with one row per accuracy (round 0 first), as a run writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = load_config(QUICKSTART, [f"eval.target_accuracy={target}", *overrides])
    save_config(cfg, folder / "config.toml")
    writer = ResultsWriter(folder)
    rows = []
    for rnd, acc in enumerate(accuracies):
        row = {"round": rnd, "central_accuracy": acc, "central_loss": 1 - acc,
               "wall_seconds": float(rnd)}
        if rnd:
            row["cumulative_uplink_bytes"] = rnd * uplink_per_round
        writer.write_round(row)
        rows.append(row)
    summary = summarize(rows, target)
    summary["name"] = cfg.name
    if finished:
        writer.write_summary(summary)
    writer.close()
    return summary
