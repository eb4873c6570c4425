"""RayGrid with stock Flower apps: FedAvg end to end, Contexts, failures, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_stock

from fedsim.config.schema import DeviceProfile

pytestmark = pytest.mark.slow


def test_stock_fedavg_end_to_end_keeps_contexts(local_ray) -> None:
    result, grid = run_stock(6, {"rounds": 3}, profiles=[DeviceProfile(actors=2)])
    assert [len(r) for r in result["replies"]] == [6, 6, 6]
    for rnd, replies in enumerate(result["replies"], start=1):
        assert all(not err for _, err, _ in replies)
        assert {m["calls"] for _, _, m in replies} == {rnd}  # Context.state kept per node
    accs = [acc for _, _, acc in result["central"]]
    assert accs[-1] > accs[0] + 0.2
    served = {n: c for a in grid.actor_report for n, c in a["served"].items()}
    assert sorted(served) == sorted(grid.node_ids) and set(served.values()) == {3}
    assert len(grid.actor_report) == 2


def test_same_seed_same_model_whatever_the_actor_count(local_ray) -> None:
    one, _ = run_stock(8, {"rounds": 2}, profiles=[DeviceProfile(actors=1)])
    four, _ = run_stock(8, {"rounds": 2}, profiles=[DeviceProfile(actors=4)])
    assert one["arrays"].keys() == four["arrays"].keys()
    for key in one["arrays"]:
        np.testing.assert_array_equal(one["arrays"][key], four["arrays"][key])
    assert one["central"] == four["central"]


def test_client_exception_becomes_counted_error_reply(local_ray) -> None:
    result, grid = run_stock(4, {"rounds": 2, "fail-partition": 1},
                             profiles=[DeviceProfile(actors=2)])
    for replies in result["replies"]:
        assert len(replies) == 4
        assert sum(err for _, err, _ in replies) == 1
    assert grid.dead_actors == 0


def test_dead_actor_becomes_error_replies_and_is_replaced(local_ray) -> None:
    result, grid = run_stock(4, {"rounds": 3, "crash-partition": 2},
                             profiles=[DeviceProfile(actors=2)])
    first, *later = result["replies"]
    # partition 2 shares its actor with partition 0, which runs again on the replacement:
    # only partition 2 gets an error reply in round 1 (it kills the replacement too, which
    # is how the grid tells which client killed the first actor)
    assert len(first) == 4 and sum(err for _, err, _ in first) == 1
    for replies in later:
        assert len(replies) == 4 and not any(err for _, err, _ in replies)
    assert grid.dead_actors == 2 and grid.pools.replaced == 2
    # partition 0's round 1 completed on the replacement and was kept; partition 2 had no
    # state yet (round 1) and restarts from an empty one; the others kept counting
    calls = sorted(m["calls"] for _, _, m in later[-1])
    assert calls == [2, 3, 3, 3]


@pytest.mark.parametrize(("backup", "last_calls"), [(True, [2, 3, 3, 3]), (False, [1, 2, 3, 3])])
def test_a_replaced_actors_nodes_resume_from_the_states_the_driver_kept(
        local_ray, backup: bool, last_calls: list[int]) -> None:
    """Partition 2 kills its actor in round 2; partition 0, in the same batch, runs its round 2
    again on the replacement. With the driver's copies partition 0 resumes in round 3 from its
    round-2 state and partition 2 from its round-1 state (calls 2, as if round 2 never ran for
    it, which is what the strategy saw); without them, partition 2 from an empty state, and
    partition 0 (which runs after it in the batch, so its rerun is on the actor that lives on)
    from its round-2 state."""
    result, grid = run_stock(4, {"rounds": 3, "crash-partition": 2, "crash-round": 2},
                             profiles=[DeviceProfile(actors=2)], client_state_backup=backup)
    first, second, third = result["replies"]
    assert sum(err for _, err, _ in first) == 0 and sum(err for _, err, _ in second) == 1
    assert grid.dead_actors == 2 and grid.pools.replaced == 2
    assert sorted(m["calls"] for _, _, m in third) == last_calls
    if backup:  # what the driver holds is each node's state after its last completed call
        assert sorted(int(s["stats"]["calls"]) for s in grid.state_backup.values()) == \
            [2, 3, 3, 3]
    else:
        assert grid.state_backup is None


def test_empty_batch_returns_at_once(local_ray) -> None:
    from fedsim.engine.ray_grid import RayGrid

    grid = RayGrid("stock_apps:client_app", 2, {}, profiles=[DeviceProfile(actors=1)])
    try:
        assert list(grid.send_and_receive([])) == []
        assert list(grid.pull_messages([])) == []
    finally:
        grid.shutdown()


def test_sizes_the_meter_reuses_are_exact(local_ray) -> None:
    """The sizes the meter reuses (replies measured in the actors, error replies of a raising
    ClientApp included; instructions sized for the clock) equal a fresh exact measurement of
    the messages the driver holds."""
    import stock_apps
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

    from fedsim.comm.meter import message_wire_bytes
    from fedsim.engine.ray_grid import RayGrid

    grid = RayGrid("stock_apps:client_app", 3, {"fail-partition": 2},
                   profiles=[DeviceProfile(actors=2)])
    try:
        content = RecordDict({"arrays": ArrayRecord(stock_apps.new_model().state_dict()),
                              "config": ConfigRecord({"server-round": 1})})
        messages = [Message(content, dst_node_id=n, message_type="train")
                    for n in grid.get_node_ids()]
        replies = list(grid.send_and_receive(messages))
        assert grid.measured_instruction_bytes(messages) == \
            [message_wire_bytes(m) for m in messages]
        measured = grid.measured_reply_bytes(replies)
        assert measured == [message_wire_bytes(r) for r in replies]
        assert [r.has_error() for r in replies] == [False, False, True]
        assert None not in measured and measured[0] > measured[2]
    finally:
        grid.shutdown()


@pytest.mark.parametrize(("actors", "spare_core", "patience", "out_when_run"),
                         [(2, True, 60.0, 2), (2, False, 60.0, 1), (1, False, 60.0, None),
                          (1, False, 0.0, 1)])
def test_work_handed_to_a_phase_runs_on_a_core_the_actors_leave(
        local_ray, actors: int, spare_core: bool, patience: float,
        out_when_run: int | None) -> None:
    """With a spare core the work runs as soon as the batches are out; without one, in the gap
    after the first batch is back, or beside the actors once its patience is out; with a
    single batch, no spare core and patience to spare, not at all (the caller runs it after
    the phase), and the next phase does not inherit it."""
    import stock_apps
    from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

    from fedsim.engine.ray_grid import RayGrid

    grid = RayGrid("stock_apps:client_app", 4, {}, profiles=[DeviceProfile(actors=actors)],
                   actors_share_this_machine=True)
    grid.spare_core, grid.idle_patience_s = spare_core, patience
    assert grid.evaluation_threads == 1  # beside training actors: one, whatever their number
    try:
        content = RecordDict({"arrays": ArrayRecord(stock_apps.new_model().state_dict()),
                              "config": ConfigRecord({"server-round": 1})})
        out: list[int] = []
        for phase in range(2):  # only the first phase gets the work
            messages = [Message(content, dst_node_id=n, message_type="train")
                        for n in grid.get_node_ids()]
            if phase == 0:
                grid.run_while_waiting(lambda: out.append(len(grid._inflight)))
            replies = list(grid.send_and_receive(messages))
            assert len(replies) == 4 and not any(r.has_error() for r in replies)
        assert out == ([] if out_when_run is None else [out_when_run])
    finally:
        grid.shutdown()


def test_shared_records_inside_the_call_or_through_the_object_store_alike(
        local_ray, monkeypatch) -> None:
    """Global arrays within ``inline_bytes`` travel inside each actor call, larger ones are put
    in Ray's object store once a phase; the federation ends with the same model either way."""
    import ray

    puts: list[int] = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(1) or real_put(value, **kw))
    inline, _ = run_stock(4, {"rounds": 2}, profiles=[DeviceProfile(actors=2)],
                          inline_bytes=1 << 30)
    assert puts == []
    stored, _ = run_stock(4, {"rounds": 2}, profiles=[DeviceProfile(actors=2)], inline_bytes=0)
    assert len(puts) == 2  # once per phase: two training rounds
    for key in inline["arrays"]:
        np.testing.assert_array_equal(inline["arrays"][key], stored["arrays"][key])
