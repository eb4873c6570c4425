"""One trial as fedsim run runs it (no Ray): its own folder, run once, resumed from its
checkpoint; and the command line's bad input refused with the option named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsim.checkpoint import CHECKPOINT_FILE
from fedsim.cli import build_parser, main
from fedsim.config import load_config, save_config
from fedsim.results.writer import read_metrics
from fedsim.sweep.trial_run import read_attempts, run_trial
from fedsim.sweep.trials import Trial, trial_dir

from .sweep_helpers import QUICKSTART, TINY


def tiny_trial(sweep_dir: Path, seed: int = 0) -> Trial:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(QUICKSTART, TINY[1::2])
    (sweep_dir / "configs").mkdir(exist_ok=True)
    save_config(cfg, sweep_dir / "configs" / "00-quickstart.toml")
    return Trial(0, "configs/00-quickstart.toml", "quickstart", {"train.lr": "0.2"}, seed)


def test_trial_runs_once_in_its_folder_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    trial = tiny_trial(tmp_path, seed=1)
    folder = trial_dir(tmp_path, trial)
    assert run_trial(tmp_path, trial) == 0
    cfg = load_config(folder / "config.toml")
    assert cfg.train.lr == 0.2 and cfg.seed == 1  # the trial's settings and seed
    rows = read_metrics(folder)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    summary = json.loads((folder / "summary.json").read_text())
    mtime = (folder / "summary.json").stat().st_mtime_ns
    # finished: not run again
    assert run_trial(tmp_path, trial) == 0
    assert (folder / "summary.json").stat().st_mtime_ns == mtime
    assert len(read_attempts(tmp_path)) == 1
    # a trial stopped after its round-3 checkpoint (summary not yet written) resumes there
    (folder / "summary.json").unlink()
    assert run_trial(tmp_path, trial) == 0
    attempts = read_attempts(tmp_path)
    assert [a["resumed_after_round"] for a in attempts] == [None, 3]
    assert json.loads((folder / "summary.json").read_text())["final_accuracy"] == \
        summary["final_accuracy"]
    # a started trial without a checkpoint starts again from an empty folder
    (folder / CHECKPOINT_FILE).unlink()
    (folder / "summary.json").unlink()
    assert run_trial(tmp_path, trial) == 0
    assert read_attempts(tmp_path)[-1]["resumed_after_round"] is None
    assert [r["round"] for r in read_metrics(folder)] == [0, 1, 2, 3]
    assert [r["central_accuracy"] for r in read_metrics(folder)] == \
        [r["central_accuracy"] for r in rows]


@pytest.mark.parametrize(("argv", "named"), [
    (["--grid", "train.nosuch=1,2"], "train.nosuch"),
    (["--grid", "train.lr=0.1,-1"], "train.lr"),
    (["--grid", "seed=1,2"], "--grid"),
    (["--seeds", "0"], "--seeds"),
    (["--concurrent", "100000"], "--concurrent"),
    (["--asha", "central_accuracy:up"], "--asha"),
    (["--search", "train.lr=loguniform:1e-3:1"], "--samples"),
])
def test_bad_sweep_options_refused_naming_them(tmp_path: Path, capsys, argv: list[str],
                                              named: str) -> None:
    code = main(["sweep", QUICKSTART, "--out", str(tmp_path / "s"), *argv])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before the sweep folder is made


def test_resume_of_a_folder_that_is_no_sweep_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_trainable_reports_each_round_once_as_it_is_written(tmp_path: Path,
                                                            monkeypatch) -> None:
    from ray import tune

    from fedsim.sweep.commands import prepare_sweep
    from fedsim.sweep.tune_runner import trainable

    args = build_parser().parse_args(["sweep", QUICKSTART, *TINY, "--set", "eval.central_every=2",
                                      "--out", str(tmp_path / "s")])
    sweep_dir, manifest, _ = prepare_sweep(args)
    reports: list[dict] = []
    monkeypatch.setattr(tune, "report", lambda metrics: reports.append(metrics))
    trainable({"trial": 0, "sweep_dir": str(sweep_dir)})
    rows = read_metrics(trial_dir(sweep_dir, manifest.trials[0]))
    assert [r["round"] for r in reports] == [1, 2, 3]
    assert all(isinstance(v, (int, float)) for r in reports for v in r.values())
    # round 1 was not evaluated centrally: it carries round 0's accuracy (what ASHA compares)
    assert "central_accuracy" not in rows[1]
    assert reports[0]["central_accuracy"] == rows[0]["central_accuracy"]
    assert reports[1]["central_accuracy"] == rows[2]["central_accuracy"]
    assert reports[2]["central_accuracy"] == rows[3]["central_accuracy"]
