"""The same ServerApp/ClientApp under Flower's own simulation (`flwr run`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
import pytest

from fedsim.config import config_from_dict
from fedsim.engine.flower_sim import federation_config

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
    # eval.device = cpu: Flower's ServerApp process sees a GPU machine's CUDA (this one does
    # not, tests/conftest.py), and the rows are compared bit for bit
    overrides = ("train.rounds=2", "train.clients_per_round=6", "eval.federated_every=2",
                 "eval.device=cpu")
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


@pytest.mark.parametrize(("profiles", "engine", "expected"), [
    ([], {}, "client-resources-num-cpus=1 client-resources-num-gpus=0.0 init-args-num-cpus=8"),
    ([{"name": "half", "num_cpus": 0.5, "num_gpus": 0.25}], {"num_gpus": 1.0},
     "client-resources-num-cpus=1 client-resources-num-gpus=0.25 init-args-num-cpus=16 "
     "init-args-num-gpus=1.0"),
    ([{"name": "big", "num_cpus": 3.0}], {}, "init-args-num-cpus=2"),
])
def test_flower_engine_gives_clients_the_profiles_resources(profiles, engine, expected) -> None:
    cfg = config_from_dict({"task": {"num_clients": 5}, "train": {"clients_per_round": 5},
                            "engine": {"num_cpus": 8, "profiles": profiles, **engine}})
    federation = federation_config(cfg)
    assert federation.startswith("num-supernodes=5 ")
    assert expected in federation


def test_flower_engine_warns_that_it_has_one_resource_spec(caplog) -> None:
    cfg = config_from_dict({"engine": {"profiles": [
        {"name": "phone", "share": 0.5, "num_cpus": 1.0},
        {"name": "gpu", "share": 0.5, "num_gpus": 0.5}]}})
    assert "client-resources-num-gpus=0.0" in federation_config(cfg)
    assert "profile 'phone'" in caplog.text
