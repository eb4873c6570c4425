"""End-to-end runs through the CLI: they learn, write their results, and are reproducible."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.results.writer import read_metrics

from helpers import metrics_without_times, run_cli, summary

SHORT = ("train.rounds=6", "eval.federated_every=3")


def test_short_run_learns_and_writes_results(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    code, run_dir = run_cli(tmp_path / "a", *SHORT)
    assert code == 0
    done = re.search(r"done in ([\d.]+) s \(([\d.]+) s in the federation, the rest starting "
                     r"and stopping the engine\); final accuracy", capsys.readouterr().err)
    assert done is not None and float(done[1]) >= float(done[2]) > 0
    rows = read_metrics(run_dir)
    assert [r["round"] for r in rows] == list(range(7))
    assert rows[0]["central_accuracy"] < 0.3
    assert rows[-1]["central_accuracy"] > 0.8
    assert rows[3]["federated_accuracy"] > 0.6 and "federated_accuracy" not in rows[2]
    assert all(r["train_replies"] == 10 and r["train_failures"] == 0 for r in rows[1:])
    s = summary(run_dir)
    assert s["rounds"] == 6 and s["final_accuracy"] == rows[-1]["central_accuracy"]
    for name in ("config.toml", "metrics.jsonl", "summary.json", "accuracy_vs_round.png"):
        assert (run_dir / name).stat().st_size > 0


def test_same_seed_same_metrics_other_seed_differs(tmp_path: Path) -> None:
    overrides = ("train.rounds=4", "train.clients_per_round=4", "eval.federated_every=2")
    _, a = run_cli(tmp_path / "a", *overrides)
    _, b = run_cli(tmp_path / "b", *overrides)
    _, c = run_cli(tmp_path / "c", *overrides, "seed=7")
    assert metrics_without_times(a) == metrics_without_times(b)
    assert metrics_without_times(a) != metrics_without_times(c)


def test_fedadam_runs_and_learns(tmp_path: Path) -> None:
    code, run_dir = run_cli(tmp_path / "adam", "train.rounds=8", "strategy.name=fedadam",
                            "strategy.eta=0.03")
    assert code == 0
    assert read_metrics(run_dir)[-1]["central_accuracy"] > 0.8


def test_compare_tabulates_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, a = run_cli(tmp_path / "a", "train.rounds=3")
    _, b = run_cli(tmp_path / "b", "train.rounds=3", "strategy.name=fedadam", "name=adam")
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "| quickstart | fedavg |" in table and "| adam | fedadam |" in table
    assert (tmp_path / "cmp" / "accuracy_vs_round.png").stat().st_size > 0
    assert main(["compare", str(tmp_path / "nothing")]) == 2
