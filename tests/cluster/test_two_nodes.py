"""fedsim on a two-node Ray cluster: profiles pinned to the nodes' custom resources land there
(as Ray's own actor table says), the run equals a single-machine run bit for bit, a profile
no node can host fails at once with a message naming it, and each partition is loaded by the
actor that trains it, never by the driver."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from helpers import QUICKSTART, metrics_without_times, run_cli

pytestmark = pytest.mark.slow
SMALL = ("train.rounds=2", "train.clients_per_round=6", "eval.federated_every=2")


def pinned_config(tmp_path: Path, site_a: str = "siteA", site_b: str = "siteB") -> Path:
    """Two profiles, half the clients each, pinned to ``site_a`` / ``site_b`` (empty: not
    pinned: the same federation on one machine)."""
    config = tmp_path / f"sites-{site_a}-{site_b}.toml"
    text = Path(QUICKSTART).read_text()
    for name, site in (("at-a", site_a), ("at-b", site_b)):
        text += f'\n[[engine.profiles]]\nname = "{name}"\nshare = 0.5\n'
        if site:
            text += f"resources = {{ {site} = 1 }}\n"
    config.write_text(text)
    return config


def test_profiles_pinned_to_sites_run_there_and_match_one_machine(
        tmp_path, two_node_cluster, capfd, monkeypatch) -> None:
    cluster, second = two_node_cluster
    code, run_dir = run_cli(tmp_path / "cluster", *SMALL,
                            f'engine.ray_address="{cluster.address}"', engine="ray",
                            config=str(pinned_config(tmp_path)))
    assert code == 0
    assert "actors ran on 2 Ray node(s)" in capfd.readouterr().err
    # the project reached the nodes as runtime-env packages, not through the driver's path
    shipped = Path(os.environ["RAY_TMPDIR"], "ray")
    assert list(shipped.glob("session_*/runtime_resources/py_modules_files/*/fedsim/engine/"
                             "pool.py"))
    with tempfile.TemporaryDirectory(prefix="fsl-", dir="/tmp") as own:
        # a Ray of its own: with the cluster's address file in sight, ray.init() would join it
        monkeypatch.setenv("RAY_TMPDIR", own)
        code, local_dir = run_cli(tmp_path / "local", *SMALL, "engine.num_cpus=2",
                                  engine="ray", config=str(pinned_config(tmp_path, "", "")))
        monkeypatch.undo()
    assert code == 0
    assert metrics_without_times(run_dir) == metrics_without_times(local_dir)

    # where the actors ran, from Ray's own actor table (GCS), not from fedsim's report
    table = cluster.global_state.actor_table(None)
    ray_node = {actor_id: info["Address"]["NodeID"] for actor_id, info in table.items()
                if info["ActorClassName"].endswith("ClientActor")}
    head_id, second_id = cluster.head_node.node_id, second.node_id
    actors = json.loads((run_dir / "actors.json").read_text())
    assert sorted(a["profile"] for a in actors) == ["at-a", "at-b"]
    for actor in actors:
        want = head_id if actor["profile"] == "at-a" else second_id
        assert ray_node[actor["actor_id"]] == want
        assert actor["ray_node_id"] == want and actor["hostname"]
    nodes = json.loads((run_dir / "nodes.json").read_text())
    assert set(nodes) == {head_id, second_id}
    assert sum(n["clients"] for n in nodes.values()) == 10
    assert nodes[second_id]["profiles"] == {"at-b": 1}
    assert sum(n["calls"] for n in nodes.values()) == sum(
        sum(a["served"].values()) for a in actors) > 0


def test_a_profile_no_node_can_host_fails_fast_naming_it(tmp_path, two_node_cluster,
                                                         capfd) -> None:
    cluster, _ = two_node_cluster
    start = time.monotonic()
    code, run_dir = run_cli(tmp_path / "nowhere", *SMALL,
                            f'engine.ray_address="{cluster.address}"', engine="ray",
                            config=str(pinned_config(tmp_path, site_b="siteC")))
    assert code == 2 and time.monotonic() - start < 60
    err = capfd.readouterr().err
    assert "engine.profiles[1]" in err and "profile 'at-b' needs 1 actor(s)" in err
    assert "siteC=1" in err and "siteB=1" in err  # what it asked, what the nodes offer
    assert not (run_dir / "metrics.jsonl").exists() or len(
        (run_dir / "metrics.jsonl").read_text().splitlines()) <= 1


def test_actors_whose_only_node_is_busy_stop_the_run_naming_them(
        tmp_path, two_node_cluster, capfd, monkeypatch) -> None:
    """siteB exists but other work holds it: the run stops once the actors' start wait is
    over (shortened here), naming the profile, instead of waiting without end."""
    import ray

    from fedsim.engine import pool
    from fedsim.engine.profiles import EXIT_NO_NODE
    from fedsim.engine.ray_engine import cluster_runtime_env

    class Idle:
        def ready(self) -> bool:
            return True

    cluster, _ = two_node_cluster
    monkeypatch.setattr(pool, "READY_TIMEOUT_S", 5.0)
    # fedsim runs on this connection (with the runtime env it would have set up itself)
    ray.init(address=cluster.address, runtime_env=cluster_runtime_env())
    try:
        blocker = ray.remote(num_cpus=0, resources={"siteB": 1})(Idle).remote()
        ray.get(blocker.ready.remote(), timeout=60)
        start = time.monotonic()
        code, _ = run_cli(tmp_path / "busy", *SMALL, engine="ray",
                          config=str(pinned_config(tmp_path)))
        assert code == EXIT_NO_NODE and time.monotonic() - start < 60
        err = capfd.readouterr().err
        assert "1 actor(s) of profile(s) 'at-b' found no free node within 5 s" in err
    finally:
        ray.shutdown()


PROBE = '''"""A digits data source that notes which process reads what (tests/cluster)."""
import os

from fedsim.tasks.datasets import DigitsSource

LOG = {log!r}


def _note(call, partition_id):
    with open(LOG, "a") as log:  # one short append per call: whole lines, whoever writes
        log.write(f"{{os.getpid()}} {{call}} {{partition_id}}\\n")


class ProbedDigits(DigitsSource):
    def client_data(self, partition_id):
        _note("client_data", partition_id)
        return super().client_data(partition_id)

    def partition_size(self, partition_id):
        _note("partition_size", partition_id)
        return super().partition_size(partition_id)
'''


def test_partitions_are_loaded_by_the_actor_that_trains_them_never_by_the_driver(
        tmp_path, two_node_cluster, monkeypatch) -> None:
    """A dataset plugin (a local module, shipped to the nodes) notes the pid of every
    process that loads a partition: each partition is loaded only by the actor that holds
    it (its pid from Ray's actor table), never by the driver, which only sizes them."""
    cluster, _ = two_node_cluster
    log = tmp_path / "data-calls.txt"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "fsc_probe_data.py").write_text(PROBE.format(log=str(log)))
    monkeypatch.syspath_prepend(str(plugins))
    code, run_dir = run_cli(tmp_path / "probed", *SMALL,
                            'task.dataset="fsc_probe_data:ProbedDigits"',
                            f'engine.ray_address="{cluster.address}"', engine="ray",
                            config=str(pinned_config(tmp_path)))
    assert code == 0
    calls = [line.split() for line in log.read_text().splitlines()]
    loads = {(int(part), int(pid)) for pid, call, part in calls if call == "client_data"}
    table = cluster.global_state.actor_table(None)
    holder = {part: table[actor["actor_id"]]["Pid"]
              for actor in json.loads((run_dir / "actors.json").read_text())
              for part in actor["partitions"]}
    assert sorted(holder) == list(range(10)) and os.getpid() not in holder.values()
    assert loads == set(holder.items())  # every partition, by its own actor only
    driver = {call for pid, call, _ in calls if int(pid) == os.getpid()}
    assert driver <= {"partition_size"}  # sizes (for placement by local work), no examples
