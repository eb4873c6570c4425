"""Vectorized clients for the vector-rule client halves: E steps of ``Y <- rule(Y, G)`` for K
clients at once, ``Y`` and ``G`` being (K, d) tensors whose row k is client k's flat vector
(``strategies/vector.py`` layout).

The stacked counterpart of :func:`strategies.local_steps.run_local_steps`: the K gradients of
a step come from one ``vmap(grad(loss))`` over the stacked parameters and the stacked batches
(``fedsim.tasks.stacked_training``), each client drawing its batches from its own seeded
order, so row k sees exactly the examples client k sees alone. A rule written as elementwise
tensor arithmetic (Lion, Adam, SGD with side statistics) works row-wise on (K, d) unchanged:
per-client tensors are stacked along dim 0, per-round constants broadcast. The results equal
the per-client loop to float rounding (the batched kernels sum in another order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fedsim.tasks.stacked_training import (
    can_stack,
    chunk_size,
    next_batches,
    stacked_gradient,
    stacked_sgd,
)
from fedsim.tasks.training import LocalBatches
from strategies.client_half import ClientUpdate, LocalRound
from strategies.local_steps import Rule
from strategies.vector import model_vector, record_vector


def stack_reason(rounds: Sequence[LocalRound]) -> str | None:
    """Why these clients' rounds cannot run as one computation (None: they can)."""
    why = can_stack(rounds[0].model, [r.batches for r in rounds])
    if why is None and len({r.steps for r in rounds}) != 1:
        why = "the clients' step counts differ"
    return why


def train_in_chunks(rounds: list[LocalRound], budget_bytes: float,
                    train_chunk: Callable[[list[LocalRound]], list[ClientUpdate]],
                    copies: int = 4) -> list[ClientUpdate] | str:
    """``train_chunk`` on consecutive chunks of ``rounds`` that fit ``budget_bytes`` (each
    client holding ``copies`` model-sized vectors: parameters, gradient, the rule's state),
    or why the rounds cannot be stacked at all."""
    why = stack_reason(rounds)
    if why is not None:
        return why
    first = rounds[0].batches
    shape = torch.Size([first.batch_size, *first.x.shape[1:]])
    size = chunk_size(rounds[0].model, shape, budget_bytes, copies)
    updates: list[ClientUpdate] = []
    for lo in range(0, len(rounds), size):
        updates += train_chunk(rounds[lo:lo + size])
    return updates


def stacked_content(rounds: Sequence[LocalRound], key: str, like: torch.Tensor) -> torch.Tensor:
    """Row k: the vector ``key`` of client k's downlink content (zeros where it has none),
    on ``like``'s device: the (K, d) stack of a per-client rule state such as momentum."""
    return torch.stack([record_vector(r.content[key], device=like.device) if key in r.content
                        else torch.zeros_like(like) for r in rounds])


def run_stacked_local_steps(model: nn.Module, batches: Sequence[LocalBatches], steps: int,
                            rule: Rule) -> tuple[torch.Tensor, list[float]]:
    """Run ``steps`` steps of ``Y <- rule(Y, G)`` for the K = ``len(batches)`` clients, all
    from the model's parameters (which stay as they are).

    Returns the final (K, d) ``Y`` and each client's mean training loss. The model must have
    no buffers (:func:`~fedsim.tasks.stacked_training.can_stack`), so the layout is its
    parameters in ``state_dict`` order; a parameter without ``requires_grad`` gets a zero
    gradient, as in :func:`~strategies.vector.grad_vector`.
    """
    model.train()
    k = len(batches)
    start = model_vector(model)
    y = start.unsqueeze(0).repeat(k, 1)
    named = list(model.state_dict().items())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    loss_fn = batches[0].loss
    step_fn = stacked_gradient(model, {}, loss_fn)
    total = torch.zeros(k, dtype=torch.float64, device=y.device)
    for _ in range(steps):
        params, off = {}, 0
        for name, t in named:
            params[name] = y[:, off:off + t.numel()].reshape(k, *t.shape)
            off += t.numel()
        xs, ys = next_batches(batches)
        grads, loss = step_fn(params, xs, ys)
        total += loss.detach().to(torch.float64)
        with torch.no_grad():
            g = torch.cat([grads[name].reshape(k, -1).float() if name in trainable
                           else torch.zeros(k, t.numel(), device=y.device)
                           for name, t in named], dim=1)
            y = rule(y, g)
    return y, (total / max(1, steps)).tolist()


def run_stacked_sgd(rounds: list[LocalRound], budget_bytes: float) -> tuple[
        torch.Tensor, torch.Tensor, list[float]] | str:
    """The clients' E local SGD steps (``train`` momentum and weight decay) as one computation,
    in chunks that fit ``budget_bytes``: the global vector x (d,), the clients' final vectors
    Y (K, d) and their mean losses; or why they cannot be stacked.

    The local step of the sign methods (z-SignFedAvg, SignSGD, stochastic sign, EF-SignSGD),
    whose uplink is then computed from x - Y[k] per client."""
    why = stack_reason(rounds)
    if why is not None:
        return why
    first = rounds[0]
    t = first.train
    x = model_vector(first.model)
    finals, losses = stacked_sgd(first.model, [r.batches for r in rounds], first.steps, t.lr,
                                 t.momentum, t.weight_decay, budget_bytes=budget_bytes)
    y = torch.stack([torch.cat([p.reshape(-1).float() for p in final.values()])
                     for final in finals])
    return x, y, losses
