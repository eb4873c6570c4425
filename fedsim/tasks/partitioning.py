"""Build flwr-datasets partitioners from the task config, and split a labelled pool with them."""

from __future__ import annotations

import warnings

import numpy as np

from fedsim.config.errors import ConfigError
from fedsim.config.schema import TaskConfig


def build_partitioner(task: TaskConfig, seed: int, label_column: str = "label"):
    """The flwr-datasets partitioner named by ``task.partitioner`` (Dirichlet, shard, ...).

    The pathological partitioner uses ``class_assignment_mode="deterministic"``: client i holds
    classes (i + j) mod C, so every class is used; the library's random mode silently drops
    classes (see reference/flower-1.41.md §10).
    """
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        NaturalIdPartitioner,
        PathologicalPartitioner,
        ShardPartitioner,
    )

    n = task.num_clients
    if task.partitioner == "iid":
        return IidPartitioner(num_partitions=n)
    if task.partitioner == "dirichlet":
        return DirichletPartitioner(num_partitions=n, partition_by=label_column, alpha=task.alpha,
                                    min_partition_size=task.min_partition_size,
                                    self_balancing=False, seed=seed)
    if task.partitioner == "shard":
        return ShardPartitioner(num_partitions=n, partition_by=label_column,
                                num_shards_per_partition=task.shards_per_client, seed=seed)
    if task.partitioner == "pathological":
        return PathologicalPartitioner(num_partitions=n, partition_by=label_column,
                                       num_classes_per_partition=task.classes_per_client,
                                       class_assignment_mode="deterministic", seed=seed)
    if task.partitioner == "natural":
        return NaturalIdPartitioner(partition_by="writer_id")
    raise ValueError(f"unknown partitioner {task.partitioner!r}")


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
