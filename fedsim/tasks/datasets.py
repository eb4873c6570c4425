"""Data sources: the ``DATASETS`` registry of data-source factories ``(task, seed) -> DataSource``.

A source gives each client its whole partition (train and local test, split later) and the
server a held-out central test set, and tells its own ``input_shape`` (C, H, W) and
``num_classes``. Clients load only their own partition. The bundled digits live here; the hub
datasets in :mod:`fedsim.tasks.hub`, the generated FedProx Synthetic family in
:mod:`fedsim.tasks.synthetic`; all register as entry points of group ``fedsim.datasets``.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from fedsim.config.schema import TaskConfig
from fedsim.registry import Registry
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.partitioning import partition_indices


class DataSource(ABC):
    """Where a task's examples come from, and what they look like."""

    input_shape: tuple[int, ...]
    """Shape of one example, (C, H, W) for images or (features,) for a table."""
    num_classes: int
    """Labels are integers in ``0 .. num_classes - 1``."""
    natural_split: str = ""
    """What one natural client is ("writer", "device") where the data comes divided into
    clients (the source then needs ``task.partitioner = "natural"``); empty where a
    partitioner splits a pool."""
    keep_partitions: bool = True
    """Whether a client process keeps a partition it has loaded for the next time; False for
    a source that makes one faster than a client trains on it (generated data): a process
    serving thousands of clients then holds none of their data between calls."""

    @abstractmethod
    def client_data(self, partition_id: int) -> ArrayDataset:
        """The whole partition of one client (before its local train/test split)."""

    @abstractmethod
    def central_test(self) -> ArrayDataset:
        """The held-out test set for central evaluation."""

    @abstractmethod
    def partition_size(self, partition_id: int) -> int:
        """Examples in one client's whole partition, without loading them."""

    def preflight(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Do the work that can fail on the settings (partitioning) now, before the run."""


DataSourceFactory = Callable[[TaskConfig, int], DataSource]


def _as_factory(obj: Any) -> DataSourceFactory:
    if not callable(obj):
        raise TypeError(f"expected a callable (task, seed) -> DataSource, got "
                        f"{type(obj).__name__}")
    return obj


DATASETS: Registry[DataSourceFactory] = Registry("dataset", "fedsim.datasets",
                                                 check=_as_factory)


class PooledSource(DataSource):
    """A labelled pool held in memory: a stratified share ``task.central_test_fraction`` is
    held out for central evaluation, the partitioner splits the rest (computed on first use).

    Subclass it, or call it with the arrays: ``PooledSource(task, seed, x, y, num_classes)``
    is a complete data source for features ``x`` (N x ...) and integer labels ``y``."""

    def __init__(self, task: TaskConfig, seed: int, x: np.ndarray, y: np.ndarray,
                 num_classes: int | None = None) -> None:
        data = ArrayDataset(np.asarray(x, np.float32), np.asarray(y, np.int64))
        self.input_shape = tuple(data.x.shape[1:])
        self.num_classes = int(num_classes if num_classes is not None else data.y.max() + 1)
        self.task, self.seed = task, seed
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

    @functools.cached_property
    def partitions(self) -> list[np.ndarray]:
        return partition_indices(self.pool.y, self.task, self.seed)

    def client_data(self, partition_id: int) -> ArrayDataset:
        return self.pool.subset(self.partitions[partition_id])

    def partition_size(self, partition_id: int) -> int:
        return len(self.partitions[partition_id])

    def central_test(self) -> ArrayDataset:
        return self.test

    def preflight(self) -> None:
        self.partitions  # noqa: B018 - computed now so that partitioning errors surface


@functools.lru_cache(maxsize=1)
def _digits() -> ArrayDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return ArrayDataset((x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), y.astype(np.int64))


class DigitsSource(PooledSource):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

    def __init__(self, task: TaskConfig, seed: int) -> None:
        data = _digits()
        super().__init__(task, seed, data.x, data.y, num_classes=10)


_SOURCES: dict[tuple, DataSource] = {}


def data_source(task: TaskConfig, seed: int) -> DataSource:
    """The (process-wide cached) source for a task; partitions are computed once per process."""
    key = (*dataclasses.astuple(task), seed)
    if key not in _SOURCES:
        if len(_SOURCES) >= 4:
            _SOURCES.pop(next(iter(_SOURCES)))
        source = DATASETS.get(task.dataset)(task, seed)
        if not isinstance(source, DataSource):
            raise TypeError(f"dataset {task.dataset!r} returned {type(source).__name__}, not a "
                            "fedsim.tasks.datasets.DataSource")
        _SOURCES[key] = source
    return _SOURCES[key]


def dataset_facts(name: str) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of dataset ``name``, as its data source tells them."""
    source = data_source(TaskConfig(dataset=name), 0)
    return tuple(source.input_shape), int(source.num_classes)
