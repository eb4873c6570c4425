"""Partitioners by name (``PARTITIONERS``, entry point group ``fedsim.partitioners``) and the
split of a labelled pool with one.

A partitioner factory ``(task, seed, label_column)`` returns a flwr-datasets ``Partitioner``
for ``task.num_clients`` partitions (``flwr_datasets.partitioner``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsim.config.errors import ConfigError
from fedsim.config.schema import TaskConfig
from fedsim.registry import Registry


def _as_factory(obj: Any) -> PartitionerFactory:
    if not callable(obj):
        raise TypeError(f"expected a callable (task, seed, label_column) -> a flwr-datasets "
                        f"Partitioner, got {type(obj).__name__}")
    return obj


PartitionerFactory = Callable[[TaskConfig, int, str], Any]
PARTITIONERS: Registry[PartitionerFactory] = Registry("partitioner", "fedsim.partitioners",
                                                      check=_as_factory)


def build_partitioner(task: TaskConfig, seed: int, label_column: str = "label"):
    """The flwr-datasets partitioner named by ``task.partitioner`` (Dirichlet, shard, ...): a
    factory ``(task, seed, label_column) -> Partitioner`` from ``PARTITIONERS``."""
    return PARTITIONERS.get(task.partitioner)(task, seed, label_column)


def iid(task: TaskConfig, seed: int, label_column: str = "label"):
    """Equal-sized uniformly random partitions."""
    from flwr_datasets.partitioner import IidPartitioner

    return IidPartitioner(num_partitions=task.num_clients)


def dirichlet(task: TaskConfig, seed: int, label_column: str = "label"):
    """Label proportions per client drawn from Dirichlet(``task.alpha``)."""
    from flwr_datasets.partitioner import DirichletPartitioner

    return DirichletPartitioner(num_partitions=task.num_clients, partition_by=label_column,
                                alpha=task.alpha, min_partition_size=task.min_partition_size,
                                self_balancing=False, seed=seed)


def shard(task: TaskConfig, seed: int, label_column: str = "label"):
    """``task.shards_per_client`` label-sorted shards per client (McMahan et al. 2017)."""
    from flwr_datasets.partitioner import ShardPartitioner

    return ShardPartitioner(num_partitions=task.num_clients, partition_by=label_column,
                            num_shards_per_partition=task.shards_per_client, seed=seed)


def pathological(task: TaskConfig, seed: int, label_column: str = "label"):
    """``task.classes_per_client`` classes per client.

    Uses ``class_assignment_mode="deterministic"``: client i holds classes (i + j) mod C, so
    every class is used; the library's random mode silently drops classes (see
    docs/design-notes.md#pathologicalpartitioner-drops-classes)."""
    from flwr_datasets.partitioner import PathologicalPartitioner

    return PathologicalPartitioner(num_partitions=task.num_clients, partition_by=label_column,
                                   num_classes_per_partition=task.classes_per_client,
                                   class_assignment_mode="deterministic", seed=seed)


def natural(task: TaskConfig, seed: int, label_column: str = "label"):
    """One client per writer (FEMNIST) or device (Synthetic): the data's own division.

    For FEMNIST, flwr-datasets' partitioner by ``writer_id``; a source with its own
    ``DataSource.natural_split`` (the synthetic devices) divides itself without it."""
    from flwr_datasets.partitioner import NaturalIdPartitioner

    return NaturalIdPartitioner(partition_by="writer_id")


def partition_indices(labels: np.ndarray, task: TaskConfig, seed: int) -> list[np.ndarray]:
    """Split positions 0..len(labels)-1 into ``task.num_clients`` index arrays.

    Only labels and positions go through flwr-datasets (an in-memory ``datasets.Dataset``), so
    the features never leave NumPy.
    """
    from datasets import Dataset

    ds = Dataset.from_dict({"label": labels.astype(np.int64).tolist(),
                            "position": np.arange(len(labels)).tolist()})
    partitioner = build_partitioner(task, seed)
    partitioner.dataset = ds
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return [np.asarray(partitioner.load_partition(i)["position"], dtype=np.int64)
                    for i in range(task.num_clients)]
    except ValueError as err:
        if task.partitioner != "dirichlet":
            raise
        raise ConfigError("task.min_partition_size", task.min_partition_size,
                          f"Dirichlet sampling with alpha={task.alpha} could not give each of "
                          f"{task.num_clients} clients that many examples ({err}); lower "
                          "task.min_partition_size or raise task.alpha") from None
