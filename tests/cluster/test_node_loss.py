"""A node of the cluster dies mid-run. When no other node can host its profile, the run stops
within ``engine.phase_timeout_s`` plus a bounded grace, with a message naming the profile and
a checkpoint, and once a node that can host the profile joins, ``--resume`` finishes the run
with the same metrics as one uninterrupted run. When another node can host it, or one that
can joins while the engine waits for it, the lost clients are counted and the run goes on."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from fedsim.checkpoint import load_checkpoint
from fedsim.cli import main
from fedsim.engine.profiles import EXIT_NO_NODE

from helpers import QUICKSTART, metrics_without_times, run_cli

pytestmark = pytest.mark.slow
PHASE_TIMEOUT_S = 10.0
GRACE_S = 30.0 + 30.0  # beyond the phase limit the engine waits for a host: start, shutdown
ROUNDS = 40  # long enough that the node goes while rounds remain (a round takes ~0.5 s)
SETTINGS = (f"train.rounds={ROUNDS}", "train.clients_per_round=10", "eval.federated_every=0",
            "output.checkpoint_every=1", f"engine.phase_timeout_s={PHASE_TIMEOUT_S}",
            "engine.vectorize=off")
ROUNDS_ELSEWHERE = 10  # with 0.3 s per client: about 1.5 s a round
JOIN_WAIT_S = 120.0  # engine.phase_timeout_s of the joining-node test: how long a host may take
SLOW_CLIENTS = ("faults.straggler_rate=1.0", "faults.straggler_delay=0.3",
                f"train.rounds={ROUNDS_ELSEWHERE}")
CLOCK_KEYS = ("stragglers", "unavailable_clients", "dropouts", "crashed_clients",
              "timed_out_clients")


def _config(tmp_path: Path, site_b: str = "siteB") -> Path:
    """Profile at-a pinned to the head's siteA, at-b to ``site_b``; half the clients each."""
    config = tmp_path / "sites.toml"
    config.write_text(Path(QUICKSTART).read_text() + f"""
[[engine.profiles]]
name = "at-a"
share = 0.5
resources = {{ siteA = 1 }}

[[engine.profiles]]
name = "at-b"
share = 0.5
resources = {{ {site_b} = 1 }}
""")
    return config


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def _fedsim_run(cluster, config: Path, run_dir: Path, settings: Iterable[str]) -> Iterator[
        tuple[subprocess.Popen, Path]]:
    """``fedsim run CONFIG`` on the cluster with ``settings``, as a child process whose stderr
    goes to a file beside ``run_dir``; (process, stderr file). Killed on the way out if it is
    still running."""
    args = [sys.executable, "-m", "fedsim", "run", str(config), "--out", str(run_dir),
            "--engine", "ray", "--set", f'engine.ray_address="{cluster.address}"']
    for item in settings:
        args += ["--set", item]
    err_file = run_dir.parent / "stderr.txt"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ))
    try:
        yield proc, err_file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _assert_one_round_lost_at_b(run_dir: Path) -> None:
    """Every round ran, and at-b's 5 clients count as crashed in exactly one of them."""
    rows = _rows(run_dir)[1:]
    assert len(rows) == ROUNDS_ELSEWHERE
    assert sorted(r["crashed_clients"] for r in rows) == [0] * (ROUNDS_ELSEWHERE - 1) + [5]


def _node_of_at_b(cluster, run_dir: Path) -> str:
    """The Ray node that Ray's own actor table gives for profile at-b's (last) actor."""
    [at_b] = [a for a in json.loads((run_dir / "actors.json").read_text())
              if a["profile"] == "at-b"]
    return cluster.global_state.actor_table(None)[at_b["actor_id"]]["Address"]["NodeID"]


def _checkpointed(run_dir: Path) -> int:
    ckpt = load_checkpoint(run_dir)  # written atomically: never seen half-written
    return ckpt.round if ckpt is not None else 0


def _wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the node was removed"
        assert time.monotonic() < end, "the condition was not met in time"
        time.sleep(0.2)  # polling a file the run writes, not a fixed wait


def test_a_lost_node_stops_the_run_resumably_and_resume_finishes_it(tmp_path,
                                                                    two_node_cluster) -> None:
    cluster, second = two_node_cluster
    run_dir = tmp_path / "run"
    with _fedsim_run(cluster, _config(tmp_path), run_dir, SETTINGS) as (proc, err_file):
        # round 1 is in metrics.jsonl and in the checkpoint: then the second node goes
        _wait_for(lambda: len(_rows(run_dir)) >= 2 and _checkpointed(run_dir) >= 1, 300, proc)
        removed = time.monotonic()
        cluster.remove_node(second)
        code = proc.wait(timeout=PHASE_TIMEOUT_S + GRACE_S + 60)
        took = time.monotonic() - removed
    stderr = err_file.read_text()
    assert code == EXIT_NO_NODE, stderr[-3000:]
    assert took < PHASE_TIMEOUT_S + GRACE_S
    assert "fedsim: stopped:" in stderr and "profile 'at-b'" in stderr
    assert "fedsim run --resume" in stderr
    done = load_checkpoint(run_dir).round
    assert 1 <= done < ROUNDS

    # a node with siteB joins: the resumed run places at-b there and finishes
    cluster.add_node(num_cpus=1, resources={"siteB": 1},
                     temp_dir=os.path.join(os.environ["RAY_TMPDIR"], "ray"))
    cluster.wait_for_nodes()
    assert main(["run", "--resume", str(run_dir)]) == 0
    rows = _rows(run_dir)
    assert [r["round"] for r in rows] == list(range(ROUNDS + 1))

    _, reference = run_cli(tmp_path / "reference", *SETTINGS, engine="inprocess")
    resumed = [{k: v for k, v in r.items() if k not in CLOCK_KEYS}
               for r in metrics_without_times(run_dir)]
    assert resumed == metrics_without_times(reference)


def _pid_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited, not yet reaped one is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _node_actors(cluster, node_id: str) -> dict[str, int]:
    """Ray's own record (GCS actor table) of the ClientActors alive on ``node_id``: id -> pid."""
    return {actor_id: info["Pid"] for actor_id, info in cluster.global_state.actor_table(
        None).items() if info["ActorClassName"].endswith("ClientActor")
        and info["State"] == "ALIVE" and info["Address"]["NodeID"] == node_id}


def kill_node(cluster, node) -> None:
    """Take ``node`` away as a machine that dies does: its raylet and agents killed without
    a graceful drain, and its actors' worker processes too (by the pids in Ray's actor
    table: this test's cluster started them). A worker whose raylet dies ends itself within
    a second or so, but lingers as a zombie until reaped; killing it makes the loss
    certain. Returns once Ray itself has declared the node and its actors dead."""
    actors = _node_actors(cluster, node.node_id)
    cluster.remove_node(node, allow_graceful=False)
    for pid in actors.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith("ray::"):
                proc.kill()

    def gone() -> bool:
        table = cluster.global_state.actor_table(None)
        nodes = {n["NodeID"]: n["Alive"] for n in cluster.global_state.node_table()}
        return (not nodes.get(node.node_id, False)
                and all(table[a]["State"] == "DEAD" for a in actors)
                and not any(_pid_running(pid) for pid in actors.values()))

    end = time.monotonic() + 60
    while not gone():
        assert time.monotonic() < end, "Ray did not declare the removed node dead in 60 s"
        time.sleep(0.2)  # polling Ray's tables, not a fixed wait


def test_a_lost_node_whose_profile_fits_elsewhere_counts_its_clients_and_goes_on(
        tmp_path, two_node_cluster) -> None:
    """Two nodes offer siteB: the one running profile at-b's actor dies after round 1; the
    at-b clients of the round under way count as crashed, a replacement starts on the other
    siteB node (as Ray's actor table says) and the run finishes."""
    cluster, _ = two_node_cluster
    temp_dir = os.path.join(os.environ["RAY_TMPDIR"], "ray")
    while len(cluster.worker_nodes) < 2:  # every worker node of this module offers siteB
        cluster.add_node(num_cpus=1, resources={"siteB": 1}, temp_dir=temp_dir)
    cluster.wait_for_nodes()
    run_dir = tmp_path / "run"
    # every client waits 0.3 s first (wall time only): the node goes while rounds remain
    with _fedsim_run(cluster, _config(tmp_path), run_dir, (*SETTINGS, *SLOW_CLIENTS)) as (
            proc, err_file):
        _wait_for(lambda: len(_rows(run_dir)) >= 2, 300, proc)
        head = cluster.head_node.node_id
        [lost] = [n for n in cluster.worker_nodes if _node_actors(cluster, n.node_id)
                  and n.node_id != head]
        kill_node(cluster, lost)
        assert proc.poll() is None, "the run ended before the node was lost"
        code = proc.wait(timeout=300)
    stderr = err_file.read_text()
    assert code == 0, stderr[-3000:]
    assert f"Ray node {lost.node_id[:8]} was lost with an actor of profile 'at-b'" in stderr
    _assert_one_round_lost_at_b(run_dir)
    [survivor] = [n.node_id for n in cluster.worker_nodes]
    assert _node_of_at_b(cluster, run_dir) == survivor != lost.node_id
    assert json.loads((run_dir / "nodes.json").read_text())[survivor]["profiles"] == {"at-b": 1}


def test_a_node_that_joins_mid_run_hosts_the_replacement(tmp_path, two_node_cluster) -> None:
    """Profile at-b is pinned to siteJ, which one node offers; it dies after round 1 and no
    other node offers siteJ. The engine waits (up to ``engine.phase_timeout_s``) for a host,
    saying so; a node with siteJ joins; the replacement actor starts there (as Ray's actor
    table says) and the run finishes with the lost clients counted."""
    cluster, _ = two_node_cluster
    temp_dir = os.path.join(os.environ["RAY_TMPDIR"], "ray")
    first = cluster.add_node(num_cpus=1, resources={"siteJ": 1}, temp_dir=temp_dir)
    cluster.wait_for_nodes()
    run_dir = tmp_path / "run"
    settings = (*SETTINGS, *SLOW_CLIENTS, f"engine.phase_timeout_s={JOIN_WAIT_S}")
    with _fedsim_run(cluster, _config(tmp_path, "siteJ"), run_dir, settings) as (proc, err_file):
        _wait_for(lambda: len(_rows(run_dir)) >= 2, 300, proc)
        assert _node_actors(cluster, first.node_id)  # at-b's actor is on the siteJ node
        kill_node(cluster, first)
        _wait_for(lambda: "host a replacement actor of profile 'at-b'; waiting up to "
                  f"{JOIN_WAIT_S:g} s" in err_file.read_text(), 120, proc)
        joined = cluster.add_node(num_cpus=1, resources={"siteJ": 1}, temp_dir=temp_dir)
        code = proc.wait(timeout=300)
    stderr = err_file.read_text()
    assert code == 0, stderr[-3000:]
    assert f"Ray node {joined.node_id[:8]} can host profile 'at-b'" in stderr
    _assert_one_round_lost_at_b(run_dir)
    assert _node_of_at_b(cluster, run_dir) == joined.node_id
