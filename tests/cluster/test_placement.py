"""Profiles that name Ray placement: validation, the actor options, and the check of a pool
against the nodes Ray reports (no Ray started here: nodes as ``ray.nodes()`` lists them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedsim.config.errors import ConfigError
from fedsim.config.schema import DeviceProfile
from fedsim.engine import pool
from fedsim.engine.pool import (
    ActorPools,
    actor_options,
    actors_fitting,
    check_hostable,
    label_matches,
    pool_sizes,
)
from fedsim.engine.profiles import ProfileUnhostable, build_profiles
from fedsim.engine.ray_engine import cluster_runtime_env, node_summary, plugin_refs


def _node(node_id: str, alive: bool = True, labels: dict | None = None, **resources) -> dict:
    return {"NodeID": node_id, "Alive": alive, "Labels": labels or {},
            "Resources": {"CPU": 1.0, "memory": 1e9, f"node:{node_id}": 1.0, **resources}}


SITE_A = _node("aaaa1111", siteA=1.0)
SITE_B = _node("bbbb2222", siteB=1.0, labels={"zone": "eu"})


@pytest.mark.parametrize(("profile", "field", "words"), [
    ({"resources": {"CPU": 1}}, "engine.profiles[0].resources", "num_cpus"),
    ({"resources": {"siteB": 0}}, "engine.profiles[0].resources.siteB", "> 0"),
    ({"resources": {"siteB": "one"}}, "engine.profiles[0].resources.siteB", "> 0"),
    ({"resources": {"siteB": 1.5}}, "engine.profiles[0].resources.siteB", "whole number"),
    ({"labels": {"zone": "in(eu,"}}, "engine.profiles[0].labels.zone", "label selector"),
    ({"labels": {"bad key!": "eu"}}, "engine.profiles[0].labels", "label key"),
    ({"accelerator_type": "H 100"}, "engine.profiles[0].accelerator_type", "H100"),
    ({"resources": ["siteB"]}, "engine.profiles[0].resources", "table"),
])
def test_bad_placement_names_the_field(profile, field, words) -> None:
    with pytest.raises(ConfigError) as err:
        build_profiles([{"name": "p", **profile}])
    assert err.value.field == field
    assert words in str(err.value)


def test_actor_options_carry_the_placement() -> None:
    [p] = build_profiles([{"name": "b", "num_cpus": 0.5, "resources": {"siteB": 1},
                           "labels": {"zone": "!in(us,ap)"}, "accelerator_type": "A10G"}])
    assert actor_options(p) == {"num_cpus": 0.5, "num_gpus": 0.0, "max_restarts": 0,
                                "resources": {"siteB": 1.0},
                                "label_selector": {"zone": "!in(us,ap)"},
                                "accelerator_type": "A10G"}
    assert actor_options(DeviceProfile()) == {"num_cpus": 1.0, "num_gpus": 0.0,
                                              "max_restarts": 0}


def test_label_selectors_match_as_ray_defines_them() -> None:
    assert label_matches("eu", "eu") and not label_matches("eu", "us")
    assert label_matches("!eu", "us") and label_matches("!eu", None)
    assert label_matches("in(eu,us)", "us") and not label_matches("in(eu,us)", None)
    assert label_matches("!in(eu, us)", "ap") and not label_matches("!in(eu, us)", "us")


def test_which_nodes_can_host_a_profile() -> None:
    pinned_b = DeviceProfile(name="b", resources={"siteB": 1})
    assert [actors_fitting(pinned_b, n) for n in (SITE_A, SITE_B)] == [0, 1]
    assert actors_fitting(pinned_b, {**SITE_B, "Alive": False}) == 0
    half = DeviceProfile(name="h", num_cpus=0.5, resources={"siteB": 0.25})
    assert actors_fitting(half, SITE_B) == 2  # CPU bounds it, not siteB
    eu = DeviceProfile(name="eu", labels={"zone": "eu"})
    assert [actors_fitting(eu, n) for n in (SITE_A, SITE_B)] == [0, 1]
    h100 = DeviceProfile(name="g", accelerator_type="H100")
    assert actors_fitting(h100, SITE_A) == 0
    assert actors_fitting(h100, _node("g", **{"accelerator_type:H100": 1.0})) == 1


def test_a_profile_no_node_can_host_fails_naming_it() -> None:
    profiles = [DeviceProfile(name="a", resources={"siteA": 1}),
                DeviceProfile(name="gpu-site", resources={"siteC": 1})]
    check_hostable(profiles[:1], [1], [SITE_A, SITE_B])
    with pytest.raises(ConfigError) as err:
        check_hostable(profiles, [1, 1], [SITE_A, SITE_B])
    assert err.value.field == "engine.profiles[1]"
    assert "'gpu-site'" in str(err.value) and "siteC=1" in str(err.value)
    assert "can hold 0" in str(err.value) and "bbbb2222: CPU=1, siteB=1" in str(err.value)
    with pytest.raises(ConfigError, match="needs 2 actor"):  # one siteA, two actors asked
        check_hostable(profiles[:1], [2], [SITE_A, SITE_B])


def test_a_sites_resource_bounds_its_automatic_pool() -> None:
    profiles = [DeviceProfile(name="a", share=0.5, resources={"siteA": 1}),
                DeviceProfile(name="b", share=0.5)]
    assert pool_sizes(profiles, [8, 8], {"CPU": 8.0, "siteA": 1.0}) == [1, 4]


def test_node_summary_counts_actors_clients_and_calls() -> None:
    actors = [{"profile": "a", "ray_node_id": "n1", "hostname": "h", "node_ip": "1",
               "nodes": [1, 2], "served": {"1": 3, "2": 3}},
              {"profile": "b", "ray_node_id": "n1", "hostname": "h", "node_ip": "1",
               "nodes": [3], "served": {"3": 2}},
              {"profile": "b", "ray_node_id": "n2", "hostname": "g", "node_ip": "2",
               "nodes": [4], "served": {}}]
    assert node_summary(actors) == {
        "n1": {"hostname": "h", "node_ip": "1", "actors": 2, "profiles": {"a": 1, "b": 1},
               "clients": 3, "calls": 8},
        "n2": {"hostname": "g", "node_ip": "2", "actors": 1, "profiles": {"b": 1},
               "clients": 1, "calls": 0}}


def test_a_joined_cluster_gets_the_project_and_local_plugins(tmp_path, monkeypatch) -> None:
    plugin = tmp_path / "my_plugins"
    plugin.mkdir()
    (plugin / "__init__.py").write_text("")
    (plugin / "models.py").write_text("NAME = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refs = plugin_refs({"task": {"model": "my_plugins.models:Net", "dataset": "digits"},
                        "strategy": {"name": "numpy.linalg:norm"}, "note": "a:b c"})
    assert refs == ["my_plugins.models:Net", "numpy.linalg:norm"]
    env = cluster_runtime_env(refs)
    shipped = [Path(p) for p in env["py_modules"]]
    assert [p.name for p in shipped] == ["fedsim", "clients", "strategies", "my_plugins"]
    assert shipped[-1] == plugin.resolve()  # numpy is installed on the nodes, not shipped
    kept = env["env_vars"].get("PYTHONPATH", "").split(os.pathsep)
    assert str(shipped[0].parent) not in kept and env["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert "__pycache__" in env["excludes"]


def _pools(monkeypatch, tables: list[list[dict]]) -> ActorPools:
    """Pools without Ray: actor (0, 0) ran on node bbbb2222; ``ray.nodes()`` answers the
    ``tables`` one after the other (the last one from then on)."""
    answers = iter(tables)
    last: list[list[dict]] = []

    def nodes() -> list[dict]:
        last[:] = [next(answers, None) or last[0]]
        return last[0]

    monkeypatch.setattr(pool, "cluster_nodes", nodes)
    monkeypatch.setattr(pool, "HOST_POLL_S", 0.001)
    pools = ActorPools.__new__(ActorPools)
    pools.node_of, pools.lost_nodes, pools.host_wait_s = {(0, 0): "bbbb2222"}, set(), 0.0
    return pools


def test_an_actor_is_lost_with_its_node_when_ray_says_so_or_cannot_reach_it(
        monkeypatch) -> None:
    import ray

    died = ray.exceptions.ActorDiedError()
    gone = {**SITE_B, "Alive": False}
    assert _pools(monkeypatch, [[SITE_A, SITE_B]]).lost_with_node((0, 0), died) is None
    pools = _pools(monkeypatch, [[SITE_A, gone]])
    assert pools.lost_with_node((0, 0), died) == "bbbb2222"
    assert pools.lost_nodes == {"bbbb2222"}
    # Ray has not declared the node dead yet, but the connection to the actor broke
    unreachable = ray.exceptions.ActorUnavailableError("RPC error: Socket closed", None)
    pools = _pools(monkeypatch, [[SITE_A, SITE_B]])
    assert pools.lost_with_node((0, 0), unreachable) == "bbbb2222"
    # ... so a replacement is not offered that node, though Ray still lists it alive
    with pytest.raises(ProfileUnhostable, match="profile 'b' any more .*can hold 0"):
        pools._await_host(DeviceProfile(name="b", resources={"siteB": 1}))
    # the driver's own node is alive as long as the driver is: that actor's process died
    monkeypatch.setattr(pool, "_driver_node", lambda: "bbbb2222")
    assert _pools(monkeypatch, [[SITE_A, SITE_B]]).lost_with_node((0, 0), unreachable) is None


def test_a_replacement_waits_for_a_node_that_joins_within_its_limit(monkeypatch,
                                                                    capsys) -> None:
    site_b = DeviceProfile(name="b", resources={"siteB": 1})
    joined = _node("cccc3333", siteB=1.0)
    pools = _pools(monkeypatch, [[SITE_A]] * 3 + [[SITE_A, joined]])
    pools.host_wait_s = 60.0
    pools._await_host(site_b)
    err = capsys.readouterr().err
    assert "profile 'b'; waiting up to 60 s (engine.phase_timeout_s)" in err
    assert "Ray node cccc3333 can host profile 'b'" in err
    pools = _pools(monkeypatch, [[SITE_A]])  # no node ever joins: a bounded wait, then stop
    pools.host_wait_s = 0.05
    with pytest.raises(ProfileUnhostable, match=r"any more \(waited 0.05 s for one to join\)"):
        pools._await_host(site_b)
    pools = _pools(monkeypatch, [[SITE_A], [SITE_A, joined]])  # no phase limit: no wait
    with pytest.raises(ProfileUnhostable, match="any more \\(profile"):
        pools._await_host(site_b)
