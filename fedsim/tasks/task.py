"""A task = data source + model factory for one experiment; what server and clients share."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.config.schema import TaskConfig, TrainConfig
from fedsim.tasks.arrays import ArrayDataset, local_test_rows
from fedsim.tasks.datasets import data_source
from fedsim.tasks.models import build_model
from fedsim.tasks.training import Augment, num_local_steps, random_crop_flip


def new_model(task: TaskConfig, seed: int = 0) -> nn.Module:
    """A freshly initialised model for the task (seed torch first for reproducibility); the
    data source of ``seed`` tells the input shape and classes."""
    source = data_source(task, seed)
    return build_model(task.model, source.input_shape, source.num_classes)


def initial_arrays(task: TaskConfig, seed: int) -> ArrayRecord:
    """The global model's initial parameters, drawn from ``seed``."""
    torch.manual_seed(seed)
    return ArrayRecord(new_model(task, seed).state_dict())


def augmentation(task: TaskConfig) -> Augment | None:
    """Training-time augmentation for the dataset (random crop + flip for CIFAR-10)."""
    return random_crop_flip if task.dataset == "cifar10" else None


def client_split(task: TaskConfig, seed: int, partition_id: int) -> tuple[
        ArrayDataset, ArrayDataset]:
    """One client's (train, local test) data: its partition split by ``local_test_fraction``."""
    data = data_source(task, seed).client_data(partition_id)
    return data.split(task.local_test_fraction, seed * 1_000_003 + partition_id)


def central_test(task: TaskConfig, seed: int) -> ArrayDataset:
    """The central test set used by the server's evaluation."""
    return data_source(task, seed).central_test()


def partition_label_counts(task: TaskConfig, seed: int) -> np.ndarray:
    """Clients x classes matrix of label counts in each client's whole partition."""
    source = data_source(task, seed)
    counts = np.zeros((task.num_clients, source.num_classes), dtype=np.int64)
    for pid in range(task.num_clients):
        counts[pid] = np.bincount(source.client_data(pid).y, minlength=counts.shape[1])
    return counts


def local_steps_per_client(task: TaskConfig, train: TrainConfig, seed: int) -> list[int] | None:
    """Each client's local steps per round (``num_local_steps`` on its training split), or None
    when every client takes the same ``train.local_steps``."""
    if train.local_steps > 0:
        return None
    source = data_source(task, seed)
    steps = []
    for pid in range(task.num_clients):
        n = source.partition_size(pid)
        n_train = n - local_test_rows(n, task.local_test_fraction)
        steps.append(num_local_steps(n_train, train.batch_size, 0, train.local_epochs))
    return steps


def preflight(task: TaskConfig, seed: int) -> None:
    """Build the offline data source now, so partitioning problems surface before the run."""
    data_source(task, seed).preflight()
