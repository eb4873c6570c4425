"""Data sources: the bundled digits (offline default) and flwr-datasets hub datasets.

A source gives each client its whole partition (train and local test, split later) and the
server a held-out central test set. Clients load only their own partition.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fedsim.config.schema import TaskConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.partitioning import build_partitioner, partition_indices


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: hub id, columns, image shape, normalisation."""

    hub_id: str
    image_column: str
    label_column: str
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    has_test_split: bool = True


HUB_DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("ylecun/mnist", "image", "label", (1, 28, 28), (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetInfo("zalando-datasets/fashion_mnist", "image", "label",
                                 (1, 28, 28), (0.2860,), (0.3530,)),
    # ImageNet statistics, as in the FedLion paper's CIFAR-10 pipeline (algorithms.md §1c).
    "cifar10": DatasetInfo("uoft-cs/cifar10", "img", "label", (3, 32, 32),
                           (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "femnist": DatasetInfo("flwrlabs/femnist", "image", "character", (1, 28, 28),
                           (0.9637,), (0.1597,), has_test_split=False),
}

NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "femnist": 62}
INPUT_SHAPES = {"digits": (1, 8, 8), **{k: v.shape for k, v in HUB_DATASETS.items()}}


class DataSource(ABC):
    """Where a task's examples come from."""

    @abstractmethod
    def client_data(self, partition_id: int) -> ArrayDataset:
        """The whole partition of one client (before its local train/test split)."""

    @abstractmethod
    def central_test(self) -> ArrayDataset:
        """The held-out test set for central evaluation."""

    @abstractmethod
    def partition_size(self, partition_id: int) -> int:
        """Examples in one client's whole partition, without loading them."""


@functools.lru_cache(maxsize=1)
def _digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return ArrayDataset((x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y.astype(np.int64))


class DigitsSource(DataSource):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

    A stratified share ``central_test_fraction`` is held out for central evaluation; the rest
    is the training pool that the partitioner splits.
    """

    def __init__(self, task: TaskConfig, seed: int) -> None:
        data = _digits()
        rng = np.random.default_rng(seed)
        test_idx = []
        for c in np.unique(data.y):
            members = np.flatnonzero(data.y == c)
            k = int(round(len(members) * task.central_test_fraction))
            test_idx.append(rng.choice(members, size=k, replace=False))
        test = np.sort(np.concatenate(test_idx))
        pool = np.setdiff1d(np.arange(len(data)), test)
        self.test = data.subset(test)
        self.pool = data.subset(pool)
        self.partitions = partition_indices(self.pool.y, task, seed)

    def client_data(self, partition_id: int) -> ArrayDataset:
        return self.pool.subset(self.partitions[partition_id])

    def partition_size(self, partition_id: int) -> int:
        return len(self.partitions[partition_id])

    def central_test(self) -> ArrayDataset:
        return self.test


class HubSource(DataSource):
    """A flwr-datasets ``FederatedDataset`` from the Hugging Face hub (needs internet once).

    FEMNIST has no test split: its central test set is the ``central_test_fraction`` of writers
    after the first ``num_clients`` (natural split) or a seeded hold-out of rows.
    """

    def __init__(self, task: TaskConfig, seed: int) -> None:
        from flwr_datasets import FederatedDataset

        self.info = HUB_DATASETS[task.dataset]
        self.task, self.seed = task, seed
        partitioner = build_partitioner(task, seed, self.info.label_column)
        self.fds = FederatedDataset(dataset=self.info.hub_id,
                                    partitioners={"train": partitioner})

    def _to_arrays(self, ds) -> ArrayDataset:
        info = self.info
        ds = ds.with_format("numpy")
        x = np.stack([np.asarray(img, dtype=np.float32) for img in ds[info.image_column]])
        x = x[:, None] if x.ndim == 3 else np.transpose(x, (0, 3, 1, 2))
        x = x / 255.0
        mean = np.asarray(info.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(info.std, np.float32).reshape(1, -1, 1, 1)
        return ArrayDataset(((x - mean) / std).astype(np.float32),
                            np.asarray(ds[info.label_column], dtype=np.int64))

    def client_data(self, partition_id: int) -> ArrayDataset:
        return self._to_arrays(self.fds.load_partition(partition_id, "train"))

    def partition_size(self, partition_id: int) -> int:
        return len(self.fds.load_partition(partition_id, "train"))  # rows, not decoded

    def central_test(self) -> ArrayDataset:
        if self.info.has_test_split:
            return self._to_arrays(self.fds.load_split("test"))
        partitioner = self.fds.partitioners["train"]
        total = partitioner.num_partitions
        first = self.task.num_clients
        count = max(1, int(round((total - first) * self.task.central_test_fraction)))
        parts = [self._to_arrays(self.fds.load_partition(i, "train"))
                 for i in range(first, min(total, first + count))]
        return ArrayDataset(np.concatenate([p.x for p in parts]),
                            np.concatenate([p.y for p in parts]))


_SOURCES: dict[tuple, DataSource] = {}


def data_source(task: TaskConfig, seed: int) -> DataSource:
    """The (process-wide cached) source for a task; partitions are computed once per process."""
    key = (*dataclasses.astuple(task), seed)
    if key not in _SOURCES:
        if len(_SOURCES) >= 4:
            _SOURCES.pop(next(iter(_SOURCES)))
        _SOURCES[key] = DigitsSource(task, seed) if task.dataset == "digits" else HubSource(
            task, seed)
    return _SOURCES[key]
