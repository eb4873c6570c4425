"""Static node -> actor placement: round-robin for equal work, longest-first for unequal work."""

from __future__ import annotations

import math

from fedsim.config import config_from_dict
from fedsim.engine.pool import node_blocks, place_nodes
from fedsim.tasks.task import client_split, local_steps_per_client


def _loads(placement: dict, work: dict) -> dict:
    loads: dict = {}
    for node, key in placement.items():
        loads[key] = loads.get(key, 0) + work[node]
    return loads


def test_equal_work_is_round_robin_per_profile() -> None:
    node_profile = {10: 0, 11: 1, 12: 0, 13: 0, 14: 1}
    assert place_nodes(node_profile, [2, 1]) == {10: (0, 0), 11: (1, 0), 12: (0, 1),
                                                 13: (0, 0), 14: (1, 0)}


def test_unequal_work_is_balanced_within_each_profile() -> None:
    # round-robin would put 9 + 9 + 1 on actor 0 and 1 + 1 + 1 on actor 1
    work = {0: 9, 1: 1, 2: 9, 3: 1, 4: 1, 5: 1, 6: 4}
    node_profile = {n: 0 if n < 6 else 1 for n in work}
    placement = place_nodes(node_profile, [2, 1], work)
    assert sorted(placement) == sorted(work)
    assert {k for n, k in placement.items() if n == 6} == {(1, 0)}  # its own profile only
    loads = _loads({n: k for n, k in placement.items() if n < 6}, work)
    assert sorted(loads.values()) == [11, 11]
    assert placement == place_nodes(node_profile, [2, 1], work)  # deterministic


def test_local_epochs_give_each_client_its_own_step_count() -> None:
    cfg = config_from_dict({
        "task": {"dataset": "digits", "model": "digits-cnn", "num_clients": 30,
                 "partitioner": "dirichlet", "alpha": 0.3, "min_partition_size": 1},
        "train": {"clients_per_round": 30, "local_steps": 0, "local_epochs": 2,
                  "batch_size": 16}})
    steps = local_steps_per_client(cfg.task, cfg.train, cfg.seed)
    assert steps is not None and len(steps) == 30
    for pid in (0, 7, 29):
        n = len(client_split(cfg.task, cfg.seed, pid)[0])  # what the client trains on
        assert steps[pid] == 2 * math.ceil(n / min(16, n))
    assert len(set(steps)) > 3  # a skewed split: unequal work
    work = dict(enumerate(steps))
    rr = _loads(place_nodes(dict.fromkeys(work, 0), [4]), work)
    lpt = _loads(place_nodes(dict.fromkeys(work, 0), [4], work), work)
    assert max(lpt.values()) < max(rr.values())
    assert max(lpt.values()) - min(lpt.values()) <= max(steps)
    fixed = config_from_dict({"train": {"local_steps": 5}})
    assert local_steps_per_client(fixed.task, fixed.train, fixed.seed) is None


def test_fold_blocks_stay_whole_on_one_actor_for_any_actor_count() -> None:
    # profile 0 holds nodes 0..6 (blocks of 3: {0,1,2}, {3,4,5}, {6}); profile 1 nodes 7..9
    node_profile = {n: 0 if n < 7 else 1 for n in range(10)}
    blocks = node_blocks(node_profile, 3)
    assert blocks == {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 0, 8: 0, 9: 0}
    for sizes in ([1, 1], [2, 1], [3, 2]):
        for work in (None, {n: float(n % 4 + 1) for n in node_profile}):
            placement = place_nodes(node_profile, sizes, work, block=3)
            for node, (p, slot) in placement.items():
                assert p == node_profile[node] and slot < sizes[p]
                # every node of a block is on its block's actor
                assert {placement[m] for m in node_profile
                        if node_profile[m] == p and blocks[m] == blocks[node]} == {(p, slot)}
    assert place_nodes(node_profile, [2, 1], block=3) == {
        **dict.fromkeys((0, 1, 2, 6), (0, 0)), **dict.fromkeys((3, 4, 5), (0, 1)),
        **dict.fromkeys((7, 8, 9), (1, 0))}
    # blocks of one node place node by node, as without blocks
    assert place_nodes(node_profile, [3, 2], block=1) == place_nodes(node_profile, [3, 2])
