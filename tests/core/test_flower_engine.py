"""The same ServerApp/ClientApp under Flower's own simulation (`flwr run`)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from helpers import metrics_without_times, run_cli

FLOWER_PROCESS_NAMES = ("flower-superlink", "flower-superexec", "flwr-simulation", "raylet")


def _flower_processes() -> set[int]:
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if any(name in cmd for name in FLOWER_PROCESS_NAMES):
            found.add(proc.pid)
    return found


@pytest.mark.slow
def test_flower_engine_matches_inprocess_and_leaves_nothing_running(tmp_path: Path) -> None:
    before = _flower_processes()
    overrides = ("train.rounds=2", "train.clients_per_round=6", "eval.federated_every=2")
    code, flower_dir = run_cli(tmp_path / "flower", *overrides, engine="flower")
    assert code == 0
    _, local_dir = run_cli(tmp_path / "local", *overrides, engine="inprocess")
    flower_rows = metrics_without_times(flower_dir)
    assert len(flower_rows) == 3
    assert flower_rows == metrics_without_times(local_dir)
    assert (flower_dir / "summary.json").exists()
    assert _flower_processes() <= before, "flwr run left processes behind"
