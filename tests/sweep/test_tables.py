"""sweep.csv, sweep.md and the band plots, from trial folders written as runs write them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsim.results.bands import band_series
from fedsim.results.spread import format_spread, spread
from fedsim.sweep.manifest import STOPPED_FILE, SweepManifest
from fedsim.sweep.table import read_csv, write_tables
from fedsim.sweep.trials import build_trials, grid_points, parse_grid, trial_dir

from .sweep_helpers import fake_run


def test_spread_is_mean_sample_std_min_max() -> None:
    mean, std, low, high = spread([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2
                                           + (4 - 7 / 3) ** 2) / 2))
    assert (low, high) == (1.0, 4.0)
    assert spread([0.5]) == (0.5, None, 0.5, 0.5)
    assert spread([]) is None
    assert format_spread([0.9, 0.8], ".2f") == "0.85 ± 0.07 (0.80–0.90)"
    assert format_spread([0.9], ".2f") == "0.90"
    assert format_spread([], ".2f") == "-"


def test_band_is_mean_and_std_per_round() -> None:
    runs = [[{"round": 0, "central_accuracy": 0.1},
             {"round": 1, "central_accuracy": 0.5, "cumulative_uplink_bytes": 100}],
            [{"round": 0, "central_accuracy": 0.3},
             {"round": 1, "central_accuracy": 0.7, "cumulative_uplink_bytes": 300}]]
    xs, mean, std = band_series(runs, "round")
    assert xs == [0, 1] and mean == pytest.approx([0.2, 0.6])
    assert std == pytest.approx([math.sqrt(0.02)] * 2)
    xs, _, _ = band_series(runs, "cumulative_uplink_bytes", 100.0)
    assert xs == [0.0, 2.0]


def make_sweep(tmp_path: Path) -> tuple[Path, SweepManifest]:
    trials = build_trials([("configs/00-q.toml", "q")],
                          grid_points(parse_grid(["train.lr=0.05,0.1"])), [0, 1])
    manifest = SweepManifest(name="s", trials=trials, grid_keys=["train.lr"])
    manifest.save(tmp_path)
    return tmp_path, manifest


def test_tables_of_a_sweep(tmp_path: Path) -> None:
    sweep_dir, manifest = make_sweep(tmp_path)
    t = manifest.trials
    fake_run(trial_dir(sweep_dir, t[0]), [0.1, 0.4, 0.6])        # reaches 0.5 at round 2
    fake_run(trial_dir(sweep_dir, t[1]), [0.1, 0.3, 0.4])        # never reaches it
    fake_run(trial_dir(sweep_dir, t[2]), [0.1, 0.55, 0.7])       # round 1
    fake_run(trial_dir(sweep_dir, t[3]), [0.1, 0.2], finished=False)
    (trial_dir(sweep_dir, t[3]) / STOPPED_FILE).write_text("{}")
    md = write_tables(sweep_dir, manifest)
    rows = read_csv(sweep_dir / "sweep.csv")
    assert [r["status"] for r in rows] == ["finished", "finished", "finished", "stopped"]
    assert [r["train.lr"] for r in rows] == ["0.05", "0.05", "0.1", "0.1"]
    assert [r["seed"] for r in rows] == ["0", "1", "0", "1"]
    assert float(rows[0]["final_accuracy"]) == 0.6 and rows[1]["rounds_to_target"] == ""
    assert rows[0]["rounds_to_target"] == "2"
    assert float(rows[0]["uplink_mb_to_target"]) == pytest.approx(2000 / 1e6)
    assert rows[3]["rounds"] == "1" and float(rows[3]["final_accuracy"]) == 0.2
    # per setting: the finished seeds only, with how many reached the target
    line_05 = next(line for line in md.splitlines() if line.startswith("| q train.lr=0.05 "))
    assert "| 2 | 1/2 |" in line_05
    assert "0.500 ± 0.141 (0.400–0.600)" in line_05
    line_1 = next(line for line in md.splitlines() if line.startswith("| q train.lr=0.1 "))
    assert "| 1 | 1/1 |" in line_1
    assert "1 stopped early" in md
    assert (sweep_dir / "accuracy_band_vs_round.png").stat().st_size > 0
    assert (sweep_dir / "accuracy_band_vs_uplink.png").stat().st_size > 0
