"""Hub datasets through flwr-datasets (MNIST, CIFAR-10, FEMNIST): run only with internet."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from fedsim.config.schema import TaskConfig
from fedsim.tasks.hub import HubSource


def _online() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


pytestmark = [pytest.mark.online,
              pytest.mark.skipif(not _online(), reason="needs internet (Hugging Face hub)")]


def test_mnist_partitions_and_central_test() -> None:
    source = HubSource(TaskConfig(dataset="mnist", model="cnn", num_clients=100,
                                  partitioner="dirichlet", alpha=0.5), seed=0)
    part = source.client_data(3)
    assert part.x.shape[1:] == (1, 28, 28) and part.x.dtype == np.float32
    assert abs(float(part.x.mean())) < 1.0
    assert len(source.central_test()) == 10_000


def test_cifar10_is_channels_first() -> None:
    source = HubSource(TaskConfig(dataset="cifar10", model="resnet20", num_clients=100,
                                  partitioner="iid"), seed=0)
    assert source.client_data(0).x.shape == (500, 3, 32, 32)


def test_femnist_writers_are_clients() -> None:
    source = HubSource(TaskConfig(dataset="femnist", model="cnn", num_clients=50,
                                  partitioner="natural", central_test_fraction=0.01), seed=0)
    assert source.client_data(0).x.shape[1:] == (1, 28, 28)
    assert len(source.central_test()) > 0
