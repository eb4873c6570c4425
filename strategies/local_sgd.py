"""Client half shared by FedAvg, FedAdam and other model-averaging methods: E local SGD steps,
then the whole local model goes uplink in fp32 (McMahan et al. 2017, Algorithm 1, ClientUpdate).
"""

from __future__ import annotations

from fedsim.comm.npy import record_from_torch
from fedsim.tasks.stacked_training import stacked_sgd
from fedsim.tasks.training import sgd_steps
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.stacked_steps import stack_reason


def stacked_local_sgd(rounds: list[LocalRound], budget_bytes: float,
                      prox_mu: float = 0.0) -> list[ClientUpdate] | str:
    """The clients' E steps of (proximal) SGD as one computation, each one's model uplink."""
    first = rounds[0]
    if (why := stack_reason(rounds)) is not None:
        return why
    t = first.train
    models, losses = stacked_sgd(first.model, [r.batches for r in rounds], first.steps, t.lr,
                                 t.momentum, t.weight_decay, prox_mu, budget_bytes)
    return [ClientUpdate(record_from_torch(m), {"train-loss": loss})
            for m, loss in zip(models, losses, strict=True)]


class LocalSGD(ClientAlgorithm):
    """y <- x; E steps of y <- y - lr * grad f_i(y); upload y (32 bits per parameter)."""

    def train(self, local: LocalRound) -> ClientUpdate:
        t = local.train
        loss = sgd_steps(local.model, local.batches, local.steps, t.lr, t.momentum,
                         t.weight_decay)
        return ClientUpdate(record_from_torch(local.model.state_dict()), {"train-loss": loss})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        return stacked_local_sgd(rounds, budget_bytes)
