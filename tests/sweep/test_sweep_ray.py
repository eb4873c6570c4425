"""``fedsim sweep`` end to end on Ray Tune: the sweep folder, Ctrl-C and resume, ASHA.

Small on purpose (2 settings x 2 seeds x a few quickstart rounds): each test starts one Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.checkpoint import CHECKPOINT_FILE
from fedsim.results.writer import read_metrics
from fedsim.sweep.manifest import SweepManifest
from fedsim.sweep.table import read_csv
from fedsim.sweep.trial_run import read_attempts
from fedsim.sweep.trials import trial_dir

from .sweep_helpers import QUICKSTART, TINY

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
# every client first waits 20 ms (wall time only, the metrics do not change): a trial lasts
# about a second, so a stop can land while one is running, on any machine
SLOWER = ["--set", "faults.straggler_rate=1.0", "--set", "faults.straggler_delay=0.02"]
SWEEP = [QUICKSTART, "--grid", "train.lr=0.05,0.2", "--seeds", "2", *TINY,
         "--set", "train.rounds=5", *SLOWER]
ACCURACY_COLUMNS = ("trial", "setting", "train.lr", "seed", "status", "rounds",
                    "final_accuracy", "best_accuracy", "rounds_to_target", "uplink_mb_to_target")
TIMEOUT_S = 600


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedsim.cli", "sweep", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}


def run_sweep(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(sweep_cmd(*args), env=env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def accuracy_columns(sweep_dir: Path) -> list[dict[str, str]]:
    return [{k: row[k] for k in ACCURACY_COLUMNS} for row in read_csv(sweep_dir / "sweep.csv")]


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory) -> Path:
    """The uninterrupted sweep, two trials at once."""
    out = tmp_path_factory.mktemp("sweeps") / "full"
    run_sweep(*SWEEP, "--concurrent", "2", "--out", str(out))
    return out


def test_sweep_folder_holds_every_trial_and_the_tables(full_sweep: Path) -> None:
    manifest = SweepManifest.load(full_sweep)
    assert len(manifest.trials) == 4
    rows = read_csv(full_sweep / "sweep.csv")
    assert [(r["train.lr"], r["seed"], r["status"]) for r in rows] == [
        ("0.05", "0", "finished"), ("0.05", "1", "finished"),
        ("0.2", "0", "finished"), ("0.2", "1", "finished")]
    for trial, row in zip(manifest.trials, rows, strict=True):
        folder = trial_dir(full_sweep, trial)
        summary = json.loads((folder / "summary.json").read_text())
        assert float(row["final_accuracy"]) == summary["final_accuracy"]
        assert [r["round"] for r in read_metrics(folder)] == list(range(6))
    # the seeds of a setting differ (different partitions and initial models)
    assert rows[0]["final_accuracy"] != rows[1]["final_accuracy"]
    md = (full_sweep / "sweep.md").read_text()
    assert "4 of 4 trials finished" in md
    assert md.count("| quickstart train.lr=") == 2 and " ± " in md
    for name in ("accuracy_band_vs_round.png", "accuracy_band_vs_uplink.png"):
        assert (full_sweep / name).stat().st_size > 0
    assert [a["resumed_after_round"] for a in read_attempts(full_sweep)] == [None] * 4


def test_interrupted_sweep_resumes_without_running_a_finished_trial_twice(
        full_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    proc = subprocess.Popen(sweep_cmd(*SWEEP, "--concurrent", "1", "--out", str(out)),
                            env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:  # wait on files, not time
            finished = list(out.glob("trials/*/summary.json"))
            started = [c for c in out.glob(f"trials/*/{CHECKPOINT_FILE}")
                       if not (c.parent / "summary.json").exists()]
            if finished and started:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "--resume" in err
    manifest = SweepManifest.load(out)
    folders = [trial_dir(out, t) for t in manifest.trials]
    done_before = {i: (f / "summary.json").stat().st_mtime_ns for i, f in enumerate(folders)
                   if (f / "summary.json").exists()}
    in_progress = {i for i, f in enumerate(folders)
                   if (f / CHECKPOINT_FILE).exists() and i not in done_before}
    assert 1 <= len(done_before) < 4 and in_progress

    run_sweep("--resume", str(out), "--concurrent", "2")
    attempts = read_attempts(out)
    for i, mtime in done_before.items():  # finished before the stop: never started again
        assert [a["trial"] for a in attempts].count(i) == 1
        assert (folders[i] / "summary.json").stat().st_mtime_ns == mtime
    for i in in_progress:  # continued from its checkpoint
        assert [a["resumed_after_round"] for a in attempts if a["trial"] == i][-1] >= 1
    assert accuracy_columns(out) == accuracy_columns(full_sweep)


def test_asha_stops_the_hopeless_trial_early(tmp_path: Path) -> None:
    out = tmp_path / "asha"
    run_sweep(QUICKSTART, "--grid", "train.lr=0.5,0.00001", *TINY, "--set", "train.rounds=5",
              "--set", "faults.straggler_rate=1.0", "--set", "faults.straggler_delay=0.1",
              "--asha", "central_accuracy:max", "--grace-period", "1", "--reduction-factor",
              "2", "--concurrent", "1", "--out", str(out))
    rows = read_csv(out / "sweep.csv")
    assert [r["status"] for r in rows] == ["finished", "stopped"]
    assert rows[0]["rounds"] == "5"
    assert int(rows[1]["rounds"]) < 5  # fewer rounds recorded
    manifest = SweepManifest.load(out)
    stopped = json.loads((trial_dir(out, manifest.trials[1]) / "stopped.json").read_text())
    assert stopped["by"] == "ASHA" and stopped["round"] < 5
    assert "1 stopped early" in (out / "sweep.md").read_text()
