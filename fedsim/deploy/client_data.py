"""A SuperNode's own data (``--data-path``) instead of a partition of a named dataset.

The file is a NumPy ``.npz`` with ``x`` (examples; any shape whose size per example matches
the task's input shape, e.g. 64 features or 1x8x8 for digits) and ``y`` (integer labels in
``0..classes-1``). Optional ``x_test``/``y_test`` give the local test split; otherwise the
client splits off ``task.local_test_fraction`` as it does for a partition.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import dataset_facts


class ClientDataError(ValueError):
    """The client's data file does not fit the experiment's task."""


def _arrays(x: np.ndarray, y: np.ndarray, dataset: str, path: Path, what: str) -> ArrayDataset:
    shape, num_classes = dataset_facts(dataset)
    per_example = int(np.prod(shape))
    if x.ndim < 1 or x.shape[0] != y.shape[0] or y.ndim != 1:
        raise ClientDataError(f"{path}: {what} has {x.shape[0] if x.ndim else 0} examples but "
                              f"{y.shape} labels (need x: N x features, y: N)")
    if x[0].size != per_example if len(x) else False:
        raise ClientDataError(f"{path}: {what} examples have {x[0].size} values; the task's "
                              f"dataset {dataset!r} needs {per_example} (shape {shape})")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ClientDataError(f"{path}: {what} labels must be in 0..{num_classes - 1}")
    return ArrayDataset(x.reshape((len(x), *shape)).astype(np.float32), y.astype(np.int64))


def load_client_data(path: str | Path, dataset: str, test_fraction: float,
                     seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, local test) from a client's own ``.npz`` file, checked against the task."""
    path = Path(path)
    if not path.is_file():
        raise ClientDataError(f"client data file {path} does not exist on this SuperNode")
    with np.load(path) as data:
        if "x" not in data or "y" not in data:
            raise ClientDataError(f"{path}: needs arrays 'x' and 'y' (has {list(data)})")
        train = _arrays(data["x"], data["y"], dataset, path, "x/y")
        if "x_test" in data and "y_test" in data:
            return train, _arrays(data["x_test"], data["y_test"], dataset, path, "x_test")
    return train.split(test_fraction, seed)
