"""The local SGD loop every client half is built on: the same bits as torch's own SGD."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.models import build_model
from fedsim.tasks.training import LocalBatches, backward_on_next_batch, sgd_steps


@pytest.mark.parametrize(("momentum", "weight_decay"), [(0.0, 0.0), (0.9, 1e-4)])
def test_sgd_steps_are_torch_sgd_bit_for_bit(momentum: float, weight_decay: float) -> None:
    """``sgd_steps`` (plain SGD as one foreach update per step; momentum or weight decay
    through ``torch.optim.SGD``) ends with the very bits of a ``torch.optim.SGD`` loop."""
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(40, 1, 8, 8)).astype(np.float32),
                        rng.integers(0, 10, 40))
    ours = build_model("digits-cnn", (1, 8, 8), 10)
    start = copy.deepcopy(ours.state_dict())
    ref = copy.deepcopy(ours)
    loss = sgd_steps(ours, LocalBatches(data, 16, "replacement", 3), 4, 0.05, momentum,
                     weight_decay)
    ref.train()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=momentum,
                          weight_decay=weight_decay)
    batches, total = LocalBatches(data, 16, "replacement", 3), 0.0
    for _ in range(4):
        total += backward_on_next_batch(ref, batches)
        opt.step()
    assert loss == total / 4
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
        assert not torch.equal(a, start[name]), name  # every tensor took a step
