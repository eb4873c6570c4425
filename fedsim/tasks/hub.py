"""Hub datasets: flwr-datasets ``FederatedDataset``s from the Hugging Face hub (needs internet
once), registered as the built-in datasets mnist, fashion-mnist, cifar10 and femnist."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fedsim.config.schema import TaskConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import DataSource
from fedsim.tasks.partitioning import build_partitioner


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: hub id, columns, image shape, classes, normalisation."""

    hub_id: str
    image_column: str
    label_column: str
    shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    has_test_split: bool = True
    natural_split: str = ""  # what a natural client is, where the hub data has one


HUB_DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("ylecun/mnist", "image", "label", (1, 28, 28), 10, (0.1307,),
                         (0.3081,)),
    "fashion-mnist": DatasetInfo("zalando-datasets/fashion_mnist", "image", "label",
                                 (1, 28, 28), 10, (0.2860,), (0.3530,)),
    # ImageNet statistics, as in FedLion's CIFAR-10 pipeline (arXiv 2402.09941, official code).
    "cifar10": DatasetInfo("uoft-cs/cifar10", "img", "label", (3, 32, 32), 10,
                           (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "femnist": DatasetInfo("flwrlabs/femnist", "image", "character", (1, 28, 28), 62,
                           (0.9637,), (0.1597,), has_test_split=False,
                           natural_split="writer"),
}


class HubSource(DataSource):
    """A flwr-datasets ``FederatedDataset`` (created on first use, so shape and classes are
    known offline).

    FEMNIST has no test split: its central test set is the ``central_test_fraction`` of writers
    after the first ``num_clients`` (natural split) or a seeded hold-out of rows.
    """

    def __init__(self, task: TaskConfig, seed: int, info: DatasetInfo | None = None) -> None:
        self.info = info or HUB_DATASETS[task.dataset]
        self.task, self.seed = task, seed
        self.input_shape = self.info.shape
        self.num_classes = self.info.num_classes
        self.natural_split = self.info.natural_split

    @functools.cached_property
    def fds(self):
        from flwr_datasets import FederatedDataset

        partitioner = build_partitioner(self.task, self.seed, self.info.label_column)
        return FederatedDataset(dataset=self.info.hub_id, partitioners={"train": partitioner})

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


def mnist(task: TaskConfig, seed: int) -> HubSource:
    """MNIST, 28x28 handwritten digits (hub, needs internet once)."""
    return HubSource(task, seed, HUB_DATASETS["mnist"])


def fashion_mnist(task: TaskConfig, seed: int) -> HubSource:
    """Fashion-MNIST, 28x28 clothing images (hub, needs internet once)."""
    return HubSource(task, seed, HUB_DATASETS["fashion-mnist"])


def cifar10(task: TaskConfig, seed: int) -> HubSource:
    """CIFAR-10, 32x32 colour images (hub, needs internet once)."""
    return HubSource(task, seed, HUB_DATASETS["cifar10"])


def femnist(task: TaskConfig, seed: int) -> HubSource:
    """FEMNIST, 62 classes of handwritten characters by writer (hub)."""
    return HubSource(task, seed, HUB_DATASETS["femnist"])
