"""Vectorized clients on a real GPU: the batched computation (``train_many``) on CUDA gives
each client the uplink it gets trained alone on CUDA (``train``). Needs CUDA; run on a GPU
machine with ``FEDSIM_TEST_GPU=1 pytest tests/gpu`` (the rest of the suite hides GPUs, see
tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from fedsim.config.schema import TrainConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.models import digits_cnn
from fedsim.tasks.training import LocalBatches
from strategies.client_half import LocalRound
from strategies.registry import get_strategy

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (FEDSIM_TEST_GPU=1 on a GPU machine)")


def _rounds(model: torch.nn.Module, data: list[ArrayDataset]) -> list[LocalRound]:
    train = TrainConfig(lr=0.05, local_steps=3, batch_size=8, momentum=0.5)
    return [LocalRound(model=model, batches=LocalBatches(d, 8, "shuffle", i,
                                                         device=torch.device("cuda")),
                       steps=3, train=train, params={}, content=RecordDict(),
                       state=RecordDict(), server_round=1, partition_id=i, noise_seed=100 + i)
            for i, d in enumerate(data)]


@pytest.mark.parametrize("strategy", ["fedavg", "fedlion", "zsignfedavg", "fedda", "fafed"])
def test_vectorized_clients_on_cuda_equal_each_client_alone(strategy: str) -> None:
    rng = np.random.default_rng(0)
    data = [ArrayDataset(rng.random((32, 1, 8, 8)).astype(np.float32),
                         rng.integers(0, 10, 32).astype(np.int64)) for _ in range(6)]
    torch.manual_seed(0)
    model = digits_cnn().cuda()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    client = get_strategy(strategy).build_client({})
    alone = []
    for local in _rounds(model, data):
        model.load_state_dict(start)
        alone.append(client.train(local))
    model.load_state_dict(start)
    batched = client.train_many(_rounds(model, data), float("inf"))
    assert not isinstance(batched, str), batched
    for b, a in zip(batched, alone, strict=True):
        for key in a.arrays:
            x, y = b.arrays[key].numpy(), a.arrays[key].numpy()
            assert x.nbytes == y.nbytes
            if y.dtype == np.uint8:  # packed signs / integers: a coordinate whose value sits
                # within GPU float rounding of 0 may flip, so allow one in ten thousand bytes
                assert np.mean(x != y) <= 1e-4
            else:  # FAFED's first Adam steps (v = 0) divide by sqrt(v) + eps, which turns the
                # rounding of a gradient near 0 into up to ~1e-4 of a step (seen on the CPU too)
                tolerance = 2e-4 if strategy == "fafed" else 1e-5
                assert np.abs(x - y).max() <= tolerance * np.abs(y).max()
