"""Partitions of the digits pool: they cover the data, and label skew grows as alpha shrinks."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.config.schema import TaskConfig
from fedsim.tasks.datasets import DigitsSource
from fedsim.tasks.task import partition_label_counts


def _positions(task: TaskConfig, seed: int = 0) -> list[np.ndarray]:
    return DigitsSource(task, seed).partitions


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet", "pathological"])
def test_partitions_are_disjoint_and_cover_the_pool(partitioner: str) -> None:
    task = TaskConfig(num_clients=10, partitioner=partitioner, alpha=0.5)
    parts = _positions(task)
    everything = np.concatenate(parts)
    assert len(parts) == 10
    assert len(np.unique(everything)) == len(everything), "a row went to two clients"
    pool = len(DigitsSource(task, 0).pool)
    if partitioner == "pathological":
        # deterministic class assignment: every class is held by some client
        counts = partition_label_counts(task, 0)
        assert (counts.sum(axis=0) > 0).all()
        assert ((counts > 0).sum(axis=1) == 2).all()
    else:
        assert np.array_equal(np.sort(everything), np.arange(pool))


def test_shard_partition_drops_at_most_one_incomplete_shard() -> None:
    task = TaskConfig(num_clients=10, partitioner="shard", shards_per_client=2)
    parts = _positions(task)
    pool = len(DigitsSource(task, 0).pool)
    used = sum(len(p) for p in parts)
    assert pool - used < pool // 20
    assert len(np.unique(np.concatenate(parts))) == used


def test_central_test_set_is_held_out_and_stratified() -> None:
    source = DigitsSource(TaskConfig(), 0)
    assert len(source.test) + len(source.pool) == 1797
    assert set(np.unique(source.test.y)) == set(range(10))
    share = np.bincount(source.test.y) / np.bincount(np.concatenate([source.test.y,
                                                                     source.pool.y]))
    assert np.allclose(share, 0.2, atol=0.02)


def _label_skew(alpha: float, seed: int) -> float:
    """Mean total-variation distance between client and global label distributions."""
    counts = partition_label_counts(TaskConfig(num_clients=20, alpha=alpha,
                                               min_partition_size=5), seed)
    client = counts / counts.sum(axis=1, keepdims=True)
    overall = counts.sum(axis=0) / counts.sum()
    return float(0.5 * np.abs(client - overall).sum(axis=1).mean())


def test_label_skew_grows_as_alpha_shrinks() -> None:
    skews = [np.mean([_label_skew(alpha, seed) for seed in range(3)])
             for alpha in (100.0, 1.0, 0.1)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.15 and skews[2] > 0.6


def test_same_seed_same_partitions_other_seed_differs() -> None:
    task = TaskConfig(num_clients=10, alpha=0.3)
    a, b, c = _positions(task, 1), _positions(task, 1), _positions(task, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))
