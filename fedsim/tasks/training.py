"""The local training step shared by the client halves: batches, loss, SGD, evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.device import module_device

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def batch_indices(n: int, batch_size: int, mode: str, rng: np.random.Generator) -> Iterator[
        np.ndarray]:
    """Endless stream of index batches over ``n`` examples.

    ``shuffle``: successive epochs over a fresh permutation (the FedLion EMNIST code);
    ``replacement``: every batch drawn uniformly with replacement (its CIFAR-10 code).
    The batch size is ``min(batch_size, n)``.
    """
    b = min(batch_size, n)
    if mode == "replacement":
        while True:
            yield rng.integers(0, n, size=b)
    while True:
        perm = rng.permutation(n)
        for start in range(0, n - b + 1, b):
            yield perm[start:start + b]


def num_local_steps(n: int, batch_size: int, local_steps: int, local_epochs: int) -> int:
    """E: explicit ``local_steps``, else ``local_epochs`` full passes of ``ceil(n / B)`` steps."""
    if local_steps > 0:
        return local_steps
    return local_epochs * max(1, math.ceil(n / max(1, min(batch_size, n))))


def random_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR-10 augmentation: random crop with ``pad`` zero-padding and a horizontal flip."""
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dxs, dys = dx.tolist(), dy.tolist()
    out = torch.stack([padded[i, :, dys[i]:dys[i] + h, dxs[i]:dxs[i] + w] for i in range(n)])
    flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
    out[flip] = out[flip].flip(-1)
    return out


def cross_entropy(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                  generator: torch.Generator) -> torch.Tensor:
    """Mean cross-entropy of the model's logits (the classification loss)."""
    return nn.functional.cross_entropy(model(xb), yb)


BatchLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""loss(model, x_batch, y_batch, generator) -> scalar loss to backpropagate."""


class LocalBatches:
    """Batches of one client's training data as tensors on ``device`` (the client's data
    moves there once a round), in a seeded order, and the loss the task scores them with
    (cross-entropy unless the task kind says otherwise). The order, the augmentation and the
    loss's own randomness come from CPU generators, so they are the same on every device."""

    def __init__(self, data: ArrayDataset, batch_size: int, mode: str, seed: int,
                 augment: Augment | None = None, loss: BatchLoss = cross_entropy,
                 device: torch.device | None = None) -> None:
        self.loss = loss
        self.device = device or torch.device("cpu")
        self.x, self.y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        if self.device.type != "cpu":
            self.x, self.y = self.x.to(self.device), self.y.to(self.device)
        self.augment = augment
        self.batch_size = min(batch_size, len(data))  # what every batch holds
        self.torch_gen = torch.Generator().manual_seed(seed)
        self._indices = batch_indices(len(data), batch_size, mode, np.random.default_rng(seed))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(next(self._indices))
        if self.device.type != "cpu":
            idx = idx.to(self.device)
        xb = self.x[idx]
        if self.augment is not None:
            xb = self.augment(xb, self.torch_gen)
        return xb, self.y[idx]


def backward_on_next_batch(model: nn.Module, batches: LocalBatches) -> float:
    """The task's loss on the client's next batch, gradients left in ``model``; return it.

    The one gradient step every client half's local loop is built on."""
    xb, yb = batches.next()
    model.zero_grad(set_to_none=True)
    loss = batches.loss(model, xb, yb, batches.torch_gen)
    loss.backward()
    return float(loss.detach())


def sgd_steps(model: nn.Module, batches: LocalBatches, steps: int, lr: float,
              momentum: float = 0.0, weight_decay: float = 0.0) -> float:
    """Run ``steps`` SGD steps on the batches' loss; return the mean training loss.

    Plain SGD (no momentum, no weight decay) is ``p <- p - lr * grad`` (FedAvg's
    ClientUpdate, McMahan et al. 2017, Algorithm 1), applied as one ``torch._foreach_add_``:
    the same bits as ``torch.optim.SGD``, without its per-step bookkeeping (about 70 us a
    step, a twentieth of a small model's client call).
    """
    model.train()
    plain = momentum == 0.0 and weight_decay == 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    opt = None if plain else torch.optim.SGD(params, lr=lr, momentum=momentum,
                                             weight_decay=weight_decay)
    total = 0.0
    for _ in range(steps):
        total += backward_on_next_batch(model, batches)
        if opt is not None:
            opt.step()
            continue
        with torch.no_grad():
            stepped = [p for p in params if p.grad is not None]
            torch._foreach_add_(stepped, [p.grad for p in stepped], alpha=-lr)
    return total / max(1, steps)


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayDataset, batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``."""
    device = module_device(model)
    return evaluate_tensors(model, torch.from_numpy(data.x).to(device),
                            torch.from_numpy(data.y).to(device), batch_size)


@torch.no_grad()
def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     batch_size: int = 2048) -> tuple[float, float]:
    """:func:`evaluate` on inputs and labels already on the model's device (a central
    evaluator keeps them there rather than copying the test set every round)."""
    model.eval()
    if len(y) == 0:
        return float("nan"), float("nan")
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start:start + batch_size])
        yb = y[start:start + batch_size]
        loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(y), correct / len(y)
