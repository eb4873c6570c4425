"""Device profiles, their validation, client fates and the virtual clock (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedsim.config import ConfigError, config_from_dict
from fedsim.config.schema import DeviceProfile
from fedsim.engine.base import assign_message_id, set_server_identity
from fedsim.engine.clock import VirtualClock, client_seconds
from fedsim.engine.profiles import assign_profiles, build_profiles, round_fate
from fedsim.engine.wire import drop_chunk_cache, message_bytes

BASE = {"task": {"num_clients": 10}, "train": {"clients_per_round": 10}}


def with_profiles(*profiles: dict, **engine) -> dict:
    return {**BASE, "engine": {"profiles": list(profiles), **engine}}


def test_shares_and_explicit_partitions_cover_every_client_once() -> None:
    profiles = build_profiles([{"name": "gpu", "partitions": [0, 9]},
                               {"name": "fast", "share": 0.25}, {"name": "slow", "share": 0.75}])
    owner = assign_profiles(profiles, 10, seed=3)
    assert owner[0] == owner[9] == 0
    assert sorted(owner).count(1) == 2 and sorted(owner).count(2) == 6
    assert owner == assign_profiles(profiles, 10, seed=3)
    assert owner != assign_profiles(profiles, 10, seed=4)


def test_no_profiles_means_one_homogeneous_profile() -> None:
    cfg = config_from_dict(BASE)
    assert [p.name for p in cfg.engine.profiles] == ["default"]
    assert assign_profiles(cfg.engine.profiles, 10, 0) == [0] * 10


@pytest.mark.parametrize(("data", "field", "words"), [
    (with_profiles({"name": "a", "num_gpus": -1}), "engine.profiles[0].num_gpus", ">= 0"),
    (with_profiles({"name": "a", "share": 0.5}, {"name": "b", "share": 0.2}),
     "engine.profiles[1].share", "sum to 1"),
    (with_profiles({"name": "a", "partitions": [3, 12]}), "engine.profiles[0].partitions",
     "0..9"),
    (with_profiles({"name": "a", "partitions": [1]}, {"name": "b", "partitions": [1]}),
     "engine.profiles[1].partitions", "not already given"),
    (with_profiles({"name": "a"}, {"name": "a", "share": 0.5}), "engine.profiles[1].name",
     "no other profile"),
    (with_profiles({"name": "a", "uplink": 3}), "engine.profiles[0].uplink", "uplink_mbps"),
    (with_profiles({"name": "a", "availability": 0}), "engine.profiles[0].availability", "0.0 <"),
    (with_profiles(compute_timer="gpu"), "engine.compute_timer", "'cpu'"),
    (with_profiles({"name": "a", "partitions": [1, 2]}), "engine.profiles", "unassigned"),
])
def test_bad_profiles_name_the_field_value_and_what_is_allowed(data, field, words) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert err.value.field == field
    assert words in str(err.value)


def test_fates_are_seeded_and_follow_the_probabilities() -> None:
    flaky = DeviceProfile(availability=0.7, dropout=0.2)
    fates = [round_fate(flaky, 0, pid, rnd, 0) for pid in range(200) for rnd in range(1, 11)]
    assert fates == [round_fate(flaky, 0, pid, rnd, 0) for pid in range(200)
                     for rnd in range(1, 11)]
    assert abs(fates.count("unavailable") / len(fates) - 0.3) < 0.03
    assert abs(fates.count("dropout") / len(fates) - 0.7 * 0.2) < 0.03
    assert {round_fate(DeviceProfile(), 0, p, 1, 0) for p in range(100)} == {None}


def test_client_time_and_deadline() -> None:
    phone = DeviceProfile(speed=0.5, uplink_mbps=1.0, downlink_mbps=8.0, latency_ms=100)
    t = client_seconds(phone, down_bytes=1_000_000, compute_s=2.0, up_bytes=250_000)
    assert t == pytest.approx(1.0 + 4.0 + 2.0 + 0.1)
    clock = VirtualClock(deadline_s=5.0)
    assert clock.phase([1.0, 7.0, 4.0], {"unavailable": 2}) == [True, False, True]
    assert clock.phase([0.5], {}) == [True]
    report = clock.end_round()
    assert report["simulated_seconds"] == pytest.approx(5.5)
    assert report["stragglers"] == 1 and report["unavailable_clients"] == 2
    assert clock.phase([2.0], {}) == [True]
    assert clock.end_round()["cumulative_simulated_seconds"] == pytest.approx(7.5)


def test_sign_compressed_uplink_saves_time_on_a_slow_uplink() -> None:
    """Measured reply sizes: a packed-sign update takes ~1/30 of the uplink time of floats."""
    set_server_identity(7)
    torch.manual_seed(0)
    state = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 10)).state_dict()
    ins = Message(RecordDict(), dst_node_id=5, message_type="train")
    assign_message_id(ins)
    flat = np.concatenate([v.numpy().ravel() for v in state.values()])
    full = Message(RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord({"n": 1})}),
                   reply_to=ins)
    signs = ArrayRecord([np.packbits(flat > 0), np.ones(1, np.float32)])
    packed = Message(RecordDict({"arrays": signs, "metrics": MetricRecord({"n": 1})}),
                     reply_to=ins)
    slow = DeviceProfile(uplink_mbps=1.0)
    t_full = client_seconds(slow, 0, 0.0, message_bytes(full))
    t_sign = client_seconds(slow, 0, 0.0, message_bytes(packed))
    assert t_full > 0.5 and t_sign < t_full / 20


def test_message_bytes_is_the_exact_serialized_size() -> None:
    from fedsim.comm.meter import message_wire_bytes

    set_server_identity(7)
    ins = Message(RecordDict(), dst_node_id=5, message_type="train")
    assign_message_id(ins)
    for seed in range(4):
        torch.manual_seed(seed)
        state = torch.nn.Linear(64, 10).state_dict()
        metrics = MetricRecord({"loss": float(seed) / 7, "num-examples": 10 + seed})
        reply = Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}),
                        reply_to=ins)
        flower = sum(len(o.deflate()) for o in get_all_nested_objects(reply).values())
        drop_chunk_cache(reply.content)
        assert message_bytes(reply) == message_wire_bytes(reply) == flower
        assert all("_chunks" not in a.__dict__ for a in reply.content["arrays"].values())


def test_meter_reuses_sizes_measured_elsewhere_and_measures_the_rest() -> None:
    from fedsim.comm.meter import CommMeter, message_wire_bytes

    set_server_identity(7)
    ins = Message(RecordDict(), dst_node_id=5, message_type="train")
    assign_message_id(ins)
    replies = [Message(RecordDict({"arrays": ArrayRecord(torch.nn.Linear(4, 2).state_dict()),
                                   "metrics": MetricRecord({"num-examples": 3})}),
                       reply_to=ins) for _ in range(3)]
    exact = [message_wire_bytes(r) for r in replies]
    meter = CommMeter()
    meter.uplink(replies, [exact[0], None, exact[2]])
    assert meter.end_round()["uplink_bytes"] == sum(exact)


def test_the_driver_yields_cores_only_while_it_waits() -> None:
    from fedsim.engine.threads import driver_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with driver_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with driver_threads(None):  # actors elsewhere (a cluster): unchanged
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_the_driver_runs_the_server_app_with_numpy_blas_limited_to_the_cores_left() -> None:
    """OpenBLAS's workers spin after each call: a norm per reply kept one busy on a core the
    actors need. serve() limits NumPy's BLAS to the grid's driver_blas_threads (through a
    metering wrapper too) and gives the threads back after the run."""
    from types import SimpleNamespace

    import numpy as np
    from threadpoolctl import threadpool_limits

    from fedsim.engine import serve
    from fedsim.engine.metering_grid import MeteringGrid

    np.dot(np.ones(4), np.ones(4))  # NumPy's BLAS loaded
    seen = []
    app = lambda grid, context: seen.append(_blas_threads())  # noqa: E731
    inner = SimpleNamespace(run=SimpleNamespace(run_id=1), driver_blas_threads=1)
    with threadpool_limits(limits=2, user_api="blas"):
        if _blas_threads() < 2:
            pytest.skip("NumPy's BLAS runs one thread here (OPENBLAS_NUM_THREADS?)")
        serve(app, inner, {})
        serve(app, MeteringGrid(inner), {})  # a metering wrapper forwards the setting
        serve(app, SimpleNamespace(run=inner.run, driver_blas_threads=None), {})  # a cluster
        assert _blas_threads() == 2  # given back
    assert seen == [1, 1, 2]
