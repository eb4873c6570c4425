"""Client half shared by FedAvg, FedAdam and other model-averaging methods: E local SGD steps,
then the whole local model goes uplink in fp32 (McMahan et al. 2017, Algorithm 1, ClientUpdate).
"""

from __future__ import annotations

from fedsim.comm.npy import record_from_torch
from fedsim.tasks.training import sgd_steps
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound


class LocalSGD(ClientAlgorithm):
    """y <- x; E steps of y <- y - lr * grad f_i(y); upload y (32 bits per parameter)."""

    def train(self, local: LocalRound) -> ClientUpdate:
        t = local.train
        loss = sgd_steps(local.model, local.batches, local.steps, t.lr, t.momentum,
                         t.weight_decay)
        return ClientUpdate(record_from_torch(local.model.state_dict()), {"train-loss": loss})
