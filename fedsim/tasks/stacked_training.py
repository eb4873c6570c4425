"""Many clients' local SGD as one batched computation (``torch.func``): vectorized clients.

The K clients of one actor's batch share the model architecture, the global model they start
from, the local rule and the step count; only their data differ. Their parameters are stacked
along a new leading axis and every step computes all K gradients at once with
``vmap(grad(loss))`` over the stacked parameters and the stacked batches (the idea of FedJAX's
``for_each_client``), instead of K small forward/backward passes. Each client still draws its
own batches from its own seeded :class:`~fedsim.tasks.training.LocalBatches`, so it sees
exactly the examples it would see alone; the arithmetic is the same as ``torch.optim.SGD``'s,
and the results equal the per-client loop to float rounding (the batched kernels sum in
another order).

A model with buffers (BatchNorm's running statistics) or a loss that draws random numbers
cannot be stacked this way; :func:`can_stack` says so and the caller runs those clients one
by one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fedsim.tasks.stacked_layers import (
    NotStackable,
    stacked_cross_entropy_gradient,
    stacked_forward,
)
from fedsim.tasks.training import BatchLoss, LocalBatches, cross_entropy

STACKABLE_LOSSES = (cross_entropy,)
"""Task losses that are a pure function of (model output, labels): the same under vmap."""


def warm_up() -> None:
    """Pay ``torch.func``'s one-off set-up cost (seconds, once per process) now, at an actor's
    start, rather than inside its first round's timed compute."""
    layer = nn.Linear(2, 2)
    params = {n: p.detach().unsqueeze(0).repeat(2, 1, *([1] * (p.dim() - 1)))
              for n, p in layer.named_parameters()}
    vmap(grad_and_value(lambda p, x: functional_call(layer, p, (x,)).sum()))(
        params, torch.zeros(2, 3, 2))


def can_stack(model: nn.Module, batches: Sequence[LocalBatches]) -> str | None:
    """Why these clients cannot run as one computation (None: they can)."""
    if len(batches) < 2:
        return "a single client"
    if any(True for _ in model.buffers()):
        return "the model has buffers (e.g. BatchNorm statistics)"
    if any(b.loss not in STACKABLE_LOSSES for b in batches):
        return "the task's loss is not a pure function of the outputs"
    if any(b.augment is not None for b in batches):
        return "per-sample data augmentation"
    if len({b.batch_size for b in batches}) != 1:
        return "the clients' batch sizes differ"
    return None


def chunk_size(model: nn.Module, batch_shape: torch.Size, budget_bytes: float,
               copies: int = 4) -> int:
    """How many clients fit in ``budget_bytes`` at once: per client, ``copies`` copies of its
    parameters (parameters, gradients, momentum and update: 4 for SGD; a vector rule's own
    state adds more) and the activations of one batch, estimated from one forward pass of a
    single example."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(
        out.numel() * out.element_size() if torch.is_tensor(out) else 0))
        for m in model.modules()]
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros((1, *batch_shape[1:]), device=device))
    finally:
        for hook in hooks:
            hook.remove()
    per_client = copies * params + 3 * sum(sizes) * batch_shape[0]  # forward + its gradients
    if math.isinf(budget_bytes):
        return 1 << 30
    return max(1, int(budget_bytes // max(1, per_client)))


def stacked_gradient(model: nn.Module, frozen: dict[str, torch.Tensor], loss_fn: BatchLoss) \
        -> Callable[..., tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """``(params, xs, ys) -> (grads, losses)``: every client's gradient of the task loss at its
    own parameters (stacked along dim 0, like ``xs`` and ``ys``) as one computation;
    ``frozen`` holds the parameters that get no gradient.

    A chain of common layers under the cross-entropy loss runs as grouped kernels
    (:mod:`fedsim.tasks.stacked_layers`); any other model, or a chain whose layers do not fit
    those layouts, as one ``vmap(grad(loss))``."""

    def client_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> \
            torch.Tensor:
        return loss_fn(lambda inputs: functional_call(model, {**p, **frozen}, (inputs,)), x, y,
                       None)

    with_vmap = vmap(grad_and_value(client_loss))
    forward = stacked_forward(model) if loss_fn is cross_entropy else None
    if forward is None:
        return with_vmap
    names = [n for n, _ in model.named_parameters() if n not in frozen]
    grouped = stacked_cross_entropy_gradient(forward, names, frozen)
    chosen: list[Callable[..., tuple[dict[str, torch.Tensor], torch.Tensor]]] = []

    def step(params: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> tuple[
            dict[str, torch.Tensor], torch.Tensor]:
        if chosen:
            return chosen[0](params, xs, ys)
        try:
            out = grouped(params, xs, ys)
            chosen.append(grouped)
        except NotStackable:
            out = with_vmap(params, xs, ys)
            chosen.append(with_vmap)
        return out

    return step


def next_batches(batches: Sequence[LocalBatches],
                 drawn: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[
                     torch.Tensor, torch.Tensor]:
    """Each client's next batch from its own seeded order, stacked (clients along dim 0);
    ``drawn`` holds client 0's batch if it was already drawn (it is used up)."""
    pairs = [drawn.pop(0) if (i == 0 and drawn) else b.next() for i, b in enumerate(batches)]
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


def stacked_sgd(model: nn.Module, batches: Sequence[LocalBatches], steps: int, lr: float,
                momentum: float = 0.0, weight_decay: float = 0.0, prox_mu: float = 0.0,
                budget_bytes: float = math.inf) -> tuple[list[OrderedDict[str, torch.Tensor]],
                                                         list[float]]:
    """``steps`` SGD steps for each client ``k`` from the model's current parameters on
    ``batches[k]``; returns each client's final parameters (in ``state_dict`` order) and its
    mean training loss.

    The update is ``torch.optim.SGD``'s (McMahan et al. 2017, Algorithm 1, with momentum and
    weight decay as torch defines them): d = g (+ prox_mu (p - p0), FedProx eq. 2)
    (+ weight_decay p); b = momentum b + d (b = d at the first step); p <- p - lr b.
    Clients run in chunks that fit ``budget_bytes``."""
    if steps <= 0:
        start = OrderedDict((n, p.detach().clone()) for n, p in model.named_parameters())
        return [OrderedDict((n, t.clone()) for n, t in start.items()) for _ in batches], \
            [0.0] * len(batches)
    first = batches[0].next()
    size = chunk_size(model, first[0].shape, budget_bytes)
    finals: list[OrderedDict[str, torch.Tensor]] = []
    losses: list[float] = []
    pending = [first]  # the first batch of client 0, drawn to size the chunks
    for lo in range(0, len(batches), size):
        chunk = batches[lo:lo + size]
        got_params, got_losses = _chunk(model, chunk, steps, lr, momentum, weight_decay,
                                        prox_mu, pending)
        pending = []
        finals += got_params
        losses += got_losses
    return finals, losses


def _chunk(model: nn.Module, batches: Sequence[LocalBatches], steps: int, lr: float,
           momentum: float, weight_decay: float, prox_mu: float,
           drawn: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[
               list[OrderedDict[str, torch.Tensor]], list[float]]:
    model.train()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    start = {n: p.detach() for n, p in model.named_parameters()}
    k = len(batches)
    params = {n: start[n].unsqueeze(0).repeat(k, *([1] * start[n].dim())) for n in names}
    frozen = {n: t for n, t in start.items() if n not in params}
    loss_fn = batches[0].loss
    step_fn = stacked_gradient(model, frozen, loss_fn)
    buffers: dict[str, torch.Tensor] = {}
    total = torch.zeros(k, dtype=torch.float64, device=start[names[0]].device)
    for step in range(steps):
        xs, ys = next_batches(batches, drawn)
        grads, loss = step_fn(params, xs, ys)
        total += loss.detach().to(torch.float64)
        with torch.no_grad():
            for n in names:
                d = grads[n]
                if prox_mu:
                    d = d.add(params[n] - start[n], alpha=prox_mu)
                if weight_decay:
                    d = d.add(params[n], alpha=weight_decay)
                if momentum:
                    if step == 0:
                        buffers[n] = d.clone()
                    else:
                        buffers[n].mul_(momentum).add_(d)
                    d = buffers[n]
                params[n].add_(d, alpha=-lr)
    order = [n for n, _ in model.named_parameters()]
    finals = [OrderedDict((n, params[n][i] if n in params else frozen[n].clone())
                          for n in order) for i in range(k)]
    return finals, (total / steps).tolist()
