"""The same ServerApp/ClientApp under Flower's own simulation (`flwr run`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
import pytest

from helpers import engine_independent, metrics_without_times, run_cli


def _processes_with_home_under(root: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            home = proc.environ().get("FLWR_HOME", "")
        except psutil.Error:
            continue
        if home.startswith(str(root)):
            found.append(proc.pid)
    return found


@pytest.mark.slow
def test_flower_engine_matches_inprocess_and_leaves_nothing_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # the run's FLWR_HOME goes here
    overrides = ("train.rounds=2", "train.clients_per_round=6", "eval.federated_every=2")
    code, flower_dir = run_cli(tmp_path / "flower", *overrides, engine="flower")
    assert code == 0
    _, local_dir = run_cli(tmp_path / "local", *overrides, engine="inprocess")
    flower_rows = engine_independent(metrics_without_times(flower_dir))
    assert len(flower_rows) == 3
    assert "uplink_payload_bytes" in flower_rows[1]
    assert flower_rows == engine_independent(metrics_without_times(local_dir))
    assert (flower_dir / "summary.json").exists()
    assert "Starting Flower Simulation" in (flower_dir / "flower.log").read_text()
    assert _processes_with_home_under(scratch) == [], "flwr run left processes behind"
