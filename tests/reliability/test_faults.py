"""Injected faults: failing, slow and corrupting clients never crash a run or get aggregated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord

from clients.faults import corrupt, draw_faults
from fedsim.config.schema import FaultConfig
from fedsim.results.writer import read_metrics

from helpers import run_cli


def _expected_counts(faults: FaultConfig, key: str, rounds: int, clients: int) -> list[int]:
    return [sum(bool(draw_faults(faults, 0, pid, rnd)[key]) for pid in range(clients))
            for rnd in range(1, rounds + 1)]


def test_twenty_percent_failing_clients_stay_within_two_points(tmp_path: Path) -> None:
    _, clean = run_cli(tmp_path / "clean")
    _, faulty = run_cli(tmp_path / "faulty", "faults.client_exception_rate=0.2")
    rows = read_metrics(faulty)[1:]
    expected = _expected_counts(FaultConfig(client_exception_rate=0.2), "raise", 20, 10)
    assert [r["train_failures"] for r in rows] == expected
    assert sum(expected) > 20
    gap = read_metrics(clean)[-1]["central_accuracy"] - rows[-1]["central_accuracy"]
    assert abs(gap) <= 0.02


def test_corrupted_replies_are_counted_and_never_aggregated(tmp_path: Path) -> None:
    faults = FaultConfig(corrupt_rate=0.3)
    _, run_dir = run_cli(tmp_path / "c", "train.rounds=8", "faults.corrupt_rate=0.3")
    rows = read_metrics(run_dir)[1:]
    expected = _expected_counts(faults, "corrupt", 8, 10)
    assert [r["train_rejected"] for r in rows] == expected
    assert sum(expected) >= 10
    assert [r["train_replies"] for r in rows] == [10 - e for e in expected]
    assert all(np.isfinite(r["central_loss"]) for r in rows)
    assert rows[-1]["central_accuracy"] > 0.8


@pytest.mark.parametrize("kind", ["nan", "inf", "shape", "dtype", "truncate"])
def test_each_corruption_changes_what_a_checker_sees(kind: str) -> None:
    good = ArrayRecord([np.ones((3, 4), np.float32), np.zeros(4, np.float32)])
    bad = corrupt(good, kind)
    a, b = good["0"], bad["0"]
    assert (a.shape, a.dtype) != (b.shape, b.dtype) or not np.isfinite(b.numpy()).all()
