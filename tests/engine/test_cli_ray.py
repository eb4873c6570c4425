"""`fedsim run --engine ray`: same results as the other engines, profiles from the config file,
and joining an existing Ray cluster started with `ray start --head`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from fedsim.engine.processes import free_port, processes_with_env, stop_processes
from fedsim.results.writer import read_metrics

from helpers import QUICKSTART, engine_independent, metrics_without_times, run_cli

pytestmark = pytest.mark.slow
SMALL = ("train.rounds=2", "train.clients_per_round=6", "eval.federated_every=2")
CLOCK_KEYS = ("stragglers", "unavailable_clients", "dropouts", "crashed_clients",
              "timed_out_clients")


def _without_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in CLOCK_KEYS} for r in rows]


def test_ray_engine_matches_inprocess_and_reports_simulated_time(tmp_path: Path) -> None:
    code, ray_dir = run_cli(tmp_path / "ray", *SMALL, engine="ray")
    assert code == 0
    _, local_dir = run_cli(tmp_path / "local", *SMALL, engine="inprocess")
    assert _without_clock(metrics_without_times(ray_dir)) == metrics_without_times(local_dir)
    rows = read_metrics(ray_dir)[1:]
    assert all(r["simulated_seconds"] > 0 for r in rows)
    assert rows[-1]["cumulative_simulated_seconds"] == pytest.approx(
        sum(r["simulated_seconds"] for r in rows))
    assert (ray_dir / "accuracy_vs_simulated_time.png").exists()
    actors = json.loads((ray_dir / "actors.json").read_text())  # who ran where, on what
    assert actors and all(a["auto_device"] == "cpu" and a["gpu_ids"] == [] for a in actors)
    served = sorted(int(n) for a in actors for n in a["served"])
    assert len(served) == len(set(served))  # each node on one actor only
    assert sorted(p for a in actors for p in a["partitions"]) == list(range(10))


def test_ray_engine_matches_flower_simulation(tmp_path: Path) -> None:
    """Equivalence: one homogeneous profile, same config, same model as Flower's engine
    (both evaluated on the CPU: Flower's ServerApp process would see a GPU machine's CUDA)."""
    code, ray_dir = run_cli(tmp_path / "ray", *SMALL, "eval.device=cpu", engine="ray")
    assert code == 0
    code, flower_dir = run_cli(tmp_path / "flower", *SMALL, "eval.device=cpu", engine="flower")
    assert code == 0
    ray_rows = engine_independent(metrics_without_times(ray_dir))
    flower_rows = engine_independent(metrics_without_times(flower_dir))
    assert len(ray_rows) == len(flower_rows) == 3
    for mine, theirs in zip(_without_clock(ray_rows), flower_rows, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_profiles_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "hetero.toml"
    config.write_text(Path(QUICKSTART).read_text() + """
[engine]
compute_timer = "fixed"
fixed_compute_s = 0.5
deadline_s = 2.0

[[engine.profiles]]
name = "phone"
share = 0.7
speed = 0.2
uplink_mbps = 1.0
availability = 0.8

[[engine.profiles]]
name = "laptop"
share = 0.3
speed = 2.0
uplink_mbps = 20.0
""")
    code, run_dir = run_cli(tmp_path / "run", "train.rounds=2", "eval.federated_every=0",
                            engine="ray", config=str(config))
    assert code == 0
    rows = read_metrics(run_dir)[1:]
    # phones need 0.5 s / 0.2 = 2.5 s > deadline: all of them are stragglers every round
    assert all(r["stragglers"] > 0 and r["simulated_seconds"] == pytest.approx(2.0)
               for r in rows)
    assert all(r["train_replies"] <= 3 for r in rows)


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def test_joins_a_cluster_started_with_ray_start_head(tmp_path: Path) -> None:
    temp_dir = tempfile.mkdtemp(prefix="fedsim-rayhead-", dir="/tmp")
    port = free_port()
    tag = uuid.uuid4().hex  # every process of this head inherits it: stop exactly those
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", FEDSIM_TEST_RAY_HEAD=tag)
    subprocess.run([_ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", f"--temp-dir={temp_dir}",
                    "--disable-usage-stats"], check=True, env=env, capture_output=True)
    try:
        code, ray_dir = run_cli(tmp_path / "ray", *SMALL,
                                f'engine.ray_address="127.0.0.1:{port}"', engine="ray")
        assert code == 0
        _, local_dir = run_cli(tmp_path / "local", *SMALL, engine="inprocess")
        assert _without_clock(metrics_without_times(ray_dir)) == metrics_without_times(local_dir)
    finally:
        # `ray stop` would stop every Ray on this machine; stop only this head's processes
        for _ in range(5):  # the raylet may spawn agents while it is being stopped
            if not stop_processes(processes_with_env("FEDSIM_TEST_RAY_HEAD", tag)):
                break
            time.sleep(1.0)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not processes_with_env("FEDSIM_TEST_RAY_HEAD", tag)


def test_a_hung_client_times_out_fails_and_its_actor_is_replaced(tmp_path: Path) -> None:
    """A client that sleeps 60 s against a 4 s phase limit: the round ends on time, its
    actor's clients count as failures and the next round runs on a fresh actor. (Training
    only: the clock counts time-outs of every phase, and on a slow machine a fresh actor's
    imports can take a federated evaluation past 4 s too.)"""
    start = time.monotonic()
    code, run_dir = run_cli(tmp_path / "hang", "train.rounds=2", "train.clients_per_round=10",
                            "faults.straggler_rate=0.15", "faults.straggler_delay=60",
                            "engine.phase_timeout_s=4", "engine.num_cpus=2",
                            "eval.federated_every=0", engine="ray")
    assert code == 0
    rows = read_metrics(run_dir)[1:]
    # no round waits for its 60 s straggler (the run's start-up is not counted: a slow
    # machine takes most of a minute to start Ray and two actors)
    assert all(r["round_seconds"] < 40 for r in rows), [r["round_seconds"] for r in rows]
    assert time.monotonic() - start < 180
    timed_out = sum(r["timed_out_clients"] for r in rows)
    assert timed_out > 0
    assert sum(r["train_failures"] for r in rows) == timed_out
    assert all(r["train_replies"] + r["train_failures"] == 10 for r in rows)
