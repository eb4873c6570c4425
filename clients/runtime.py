"""Client runtime: per-process caches of partitions and models, and per-round seeds."""

from __future__ import annotations

import numpy as np
from torch import nn

from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.kind import TaskKind, task_kind
from fedsim.tasks.task import client_split

_DATA: dict[tuple, tuple[ArrayDataset, ArrayDataset]] = {}
_MODELS: dict[TaskKind, nn.Module] = {}


def local_data(setup, partition_id: int,
               data_path: str | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """This client's (train, local test) split, loaded once per process and partition.

    ``data_path`` (a deployed SuperNode's ``--data-path``): the client's own ``.npz`` file
    replaces the partition (see ``fedsim/deploy/client_data.py``).
    """
    key = (task_kind(setup), partition_id, data_path)  # the kind: task settings and seed
    if key not in _DATA:
        if data_path:
            from fedsim.deploy.client_data import load_client_data

            _DATA[key] = load_client_data(data_path, setup.task.dataset,
                                          setup.task.local_test_fraction,
                                          setup.seed * 1_000_003 + partition_id)
        else:
            _DATA[key] = client_split(setup.task, setup.seed, partition_id)
    return _DATA[key]


def model_for(setup) -> nn.Module:
    """A reusable model instance for the task (its parameters are overwritten every round)."""
    kind = task_kind(setup)
    if kind not in _MODELS:
        _MODELS[kind] = kind.new_model()
    return _MODELS[kind]


def round_seed(seed: int, partition_id: int, server_round: int, stream: int) -> int:
    """A 63-bit seed for one client, round and purpose (0: batches, 1: noise)."""
    state = np.random.SeedSequence([seed, partition_id, server_round, stream]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)
