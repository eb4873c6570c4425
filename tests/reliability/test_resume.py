"""Checkpoint and resume: a run killed mid-way ends exactly like an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.results.writer import read_metrics

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.toml")
# FedAdam keeps server state (moments) and 5 of 10 clients are sampled per round, so a resume
# that lost strategy state or sampling state would diverge.
OVERRIDES = ["train.rounds=10", "train.clients_per_round=5", "strategy.name=fedadam",
             "strategy.eta=0.03", "task.model=digits-cnn", "train.local_epochs=3",
             "output.checkpoint_every=2", "eval.federated_every=3", "output.plots=false"]


def _argv(out: Path) -> list[str]:
    argv = ["run", QUICKSTART, "--out", str(out), "--engine", "inprocess"]
    for item in OVERRIDES:
        argv += ["--set", item]
    return argv


def _without_times(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")}
            for r in read_metrics(run_dir)]


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "fedsim.cli", *_argv(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for_round(run_dir: Path, rnd: int, proc: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        rows = read_metrics(run_dir)
        if rows and rows[-1]["round"] >= rnd:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError(f"round {rnd} not reached")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(_argv(out)) == 0
    return _without_times(out)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path: Path,
                                                      reference: list[dict]) -> None:
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_round(out, 5, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    assert read_metrics(out)[-1]["round"] < 10
    assert main(["run", "--resume", str(out)]) == 0
    assert _without_times(out) == reference


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resumes(tmp_path: Path, reference: list[dict]) -> None:
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_round(out, 3, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "fedsim run --resume" in err.decode()
    assert "Traceback" not in err.decode()
    stopped_at = read_metrics(out)[-1]["round"]
    assert stopped_at < 10
    assert main(["run", "--resume", str(out)]) == 0
    assert _without_times(out) == reference


def test_resume_refuses_folders_without_checkpoint(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "a fedsim results folder" in capsys.readouterr().err
    out = tmp_path / "short"
    assert main(["run", QUICKSTART, "--out", str(out), "--set", "train.rounds=1",
                 "--set", "output.checkpoint_every=0"]) == 0
    assert main(["run", "--resume", str(out)]) == 2
    assert "a run with a checkpoint" in capsys.readouterr().err
