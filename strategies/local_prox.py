"""FedProx's client half (Li et al., MLSys 2020, "Federated Optimization in Heterogeneous
Networks", arXiv 1812.06127, eq. (2)): E local SGD steps on the proximal objective

    h_k(w; w^t) = F_k(w) + mu/2 * ||w - w^t||^2,

whose gradient is grad F_k(w) + mu (w - w^t); the local model goes uplink in fp32 as in FedAvg.
The server sends mu as Flower's ``FedProx`` does, under ``"proximal-mu"`` in the train
instruction's ``config`` record, so this half serves Flower's FedProx and any strategy that
follows its protocol.
"""

from __future__ import annotations

import torch

from fedsim.comm.npy import record_from_torch
from fedsim.tasks.training import backward_on_next_batch
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.local_sgd import LocalSGD, stacked_local_sgd

MU_KEY = "proximal-mu"


def proximal_mu(local: LocalRound) -> float:
    """mu of this round's instruction (0 when the server sent none)."""
    config = local.content.get("config")
    value = config.get(MU_KEY, 0.0) if config is not None else 0.0
    mu = float(value)
    if not mu >= 0.0:  # also refuses NaN
        raise ValueError(f"the server sent {MU_KEY} = {value!r}; FedProx needs mu >= 0")
    return mu


class LocalProx(ClientAlgorithm):
    """y <- x; E steps of y <- y - lr * (grad F_k(y) + mu (y - x)); upload y.

    With mu = 0 this is exactly :class:`~strategies.local_sgd.LocalSGD` (same bits)."""

    def train(self, local: LocalRound) -> ClientUpdate:
        mu = proximal_mu(local)
        if mu == 0.0:
            return LocalSGD().train(local)
        t = local.train
        model = local.model
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        anchor = [p.detach().clone() for p in params]  # w^t, the global model
        opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum,
                              weight_decay=t.weight_decay)
        total = 0.0
        for _ in range(local.steps):
            total += backward_on_next_batch(model, local.batches)
            with torch.no_grad():
                for p, p0 in zip(params, anchor, strict=True):
                    if p.grad is not None:
                        p.grad.add_(p - p0, alpha=mu)
            opt.step()
        return ClientUpdate(record_from_torch(model.state_dict()),
                            {"train-loss": total / max(1, local.steps)})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        mus = {proximal_mu(r) for r in rounds}
        if len(mus) != 1:
            return "the clients received different proximal-mu"
        return stacked_local_sgd(rounds, budget_bytes, prox_mu=mus.pop())
