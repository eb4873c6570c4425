"""A CSV of features as a user's dataset, by dotted reference.

``[task] dataset = "csv_source:sensor_readings"`` names the factory below, which fedsim calls
as ``(task, seed)`` for a :class:`~fedsim.tasks.datasets.DataSource`. ``PooledSource`` holds
the rows in memory, keeps ``task.central_test_fraction`` of them for central evaluation and
splits the rest across the clients with ``task.partitioner``; the source tells its own
``input_shape`` (here ``(4,)``) and ``num_classes``. Run from this folder::

    cd examples/own_dataset
    fedsim run csv.toml --engine inprocess

``readings.csv`` has a header ``f1,f2,f3,f4,label`` and one example per row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedsim.config.schema import TaskConfig
from fedsim.tasks.datasets import PooledSource

CSV = Path(__file__).with_name("readings.csv")


def sensor_readings(task: TaskConfig, seed: int) -> PooledSource:
    """The rows of ``readings.csv``: four float features, an integer label in 0..2."""
    table = np.loadtxt(CSV, delimiter=",", skiprows=1, dtype=np.float64)
    x, y = table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)
    return PooledSource(task, seed, x, y, num_classes=3)
