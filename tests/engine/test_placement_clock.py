"""Two device profiles on one local Ray: placement by resources, clock, deadline and fates."""

from __future__ import annotations

import pytest
from conftest import run_stock

from fedsim.config.schema import DeviceProfile
from fedsim.engine.profiles import assign_profiles

pytestmark = pytest.mark.slow


def test_clients_run_only_on_their_profiles_actors(local_ray) -> None:
    profiles = [DeviceProfile(name="cpu-box", share=1.0, num_cpus=1.0, num_gpus=0.0, actors=2),
                DeviceProfile(name="gpu-half", partitions=[0, 3, 5], num_cpus=0.5, num_gpus=0.5,
                              actors=2)]
    owner = assign_profiles(profiles, 8, seed=0)
    result, grid = run_stock(8, {"rounds": 2}, profiles=profiles, partition_profile=owner)
    assert all(len(r) == 8 and not any(e for _, e, _ in r) for r in result["replies"])
    expected = {"cpu-box": {"CPU": 1.0}, "gpu-half": {"CPU": 0.5, "GPU": 0.5}}
    served_by: dict[int, set[str]] = {}
    for actor in grid.actor_report:
        assert actor["resources"] == expected[actor["profile"]], actor
        # Ray gives the half-GPU actors a (logical) GPU and hides it from the CPU-only ones;
        # train.device = auto follows: CUDA only on the GPU profile, and only where torch has it
        gets_gpu = actor["profile"] == "gpu-half"
        assert bool(actor["gpu_ids"]) == gets_gpu, actor
        if gets_gpu:
            assert actor["cuda_visible_devices"] == ",".join(actor["gpu_ids"]), actor
        cuda = actor["torch_cuda_devices"] > 0
        assert actor["auto_device"] == ("cuda" if gets_gpu and cuda else "cpu"), actor
        for node in actor["served"]:
            served_by.setdefault(node, set()).add(actor["profile"])
    assert len({a["pid"] for a in grid.actor_report}) == 4
    for node, where in served_by.items():
        assert where == {profiles[owner[grid.partition_of[node]]].name}
    assert sorted(served_by) == sorted(grid.node_ids)


def test_deadline_drops_stragglers_and_fates_are_counted(local_ray) -> None:
    slowpoke = DeviceProfile(name="slow", partitions=[3], speed=0.1, actors=1)
    flaky = DeviceProfile(name="flaky", share=1.0, availability=0.6, actors=1)
    profiles = [flaky, slowpoke]
    owner = assign_profiles(profiles, 6, seed=0)
    result, grid = run_stock(6, {"rounds": 3}, profiles=profiles, partition_profile=owner,
                             deadline_s=5.0, compute_timer="fixed", fixed_compute_s=1.0)
    report = grid.end_round()
    slow_node = grid.node_ids[3]
    for replies in result["replies"]:  # the straggler's reply never reaches the strategy
        assert slow_node not in [n for n, _, _ in replies]
    assert report["stragglers"] == 3
    unavailable = sum(e for r in result["replies"] for _, e, _ in r)
    assert report["unavailable_clients"] == unavailable > 0
    assert report["simulated_seconds"] == pytest.approx(15.0)  # 3 rounds cut at the deadline


def test_fixed_compute_clock_is_reproducible(local_ray) -> None:
    fast = DeviceProfile(name="fast", share=0.5, speed=2.0, uplink_mbps=10.0, actors=1)
    slow = DeviceProfile(name="slow", share=0.5, speed=0.5, uplink_mbps=1.0, latency_ms=50,
                         actors=1)
    owner = assign_profiles([fast, slow], 4, seed=0)
    runs = []
    for _ in range(2):
        _, grid = run_stock(4, {"rounds": 2}, profiles=[fast, slow], partition_profile=owner,
                            compute_timer="fixed", fixed_compute_s=1.0)
        runs.append(grid.end_round())
    assert runs[0] == runs[1]
    # slowest client each round: 1 s / 0.5 + ~2.9 KB at 1 Mbit/s + 50 ms
    assert runs[0]["simulated_seconds"] == pytest.approx(2 * (2.0 + 0.05 + 0.0233), rel=0.02)
