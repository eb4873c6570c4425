"""The local loop every vector-rule client half shares: E steps of ``y <- rule(y, g)``.

``g`` is the stochastic gradient of the cross-entropy at ``y`` on the client's next batch, as
one flat vector (``strategies/vector.py`` layout). Rules such as Lion (FedLion), Adam (FAFED)
or SGD with side statistics (FedDA) are written as plain tensor arithmetic on ``y`` and ``g``;
the loop loads ``y`` back into the model before each gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fedsim.tasks.training import LocalBatches, backward_on_next_batch
from strategies.vector import grad_vector, load_vector, model_vector

Rule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def run_local_steps(model: nn.Module, batches: LocalBatches, steps: int, rule: Rule) -> tuple[
        torch.Tensor, float]:
    """Run ``steps`` steps of ``y <- rule(y, g)`` from the model's parameters.

    Returns the final ``y`` (also loaded into the model) and the mean training loss.
    """
    model.train()
    y = model_vector(model)
    total = 0.0
    for _ in range(steps):
        total += backward_on_next_batch(model, batches)
        y = rule(y, grad_vector(model))
        load_vector(model, y)
    return y, total / max(1, steps)
