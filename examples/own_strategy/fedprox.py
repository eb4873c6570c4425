"""FedProx (Li et al., MLSys 2020, arXiv 1812.06127) as a user's plugin, in one file.

Each client minimises ``f_i(w) + mu/2 ||w - w_global||^2`` with E local SGD steps; the server
averages the models as FedAvg does. Nothing of fedsim is edited: the config names this file's
``SPEC`` by dotted reference. Run it from this folder (the current folder is importable)::

    cd examples/own_strategy
    fedsim run fedprox.toml --engine inprocess

``fedsim list --params fedprox:SPEC`` shows its settings; ``[strategy] mu`` is validated like a
built-in strategy's (try ``--set strategy.mu=-1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from fedsim.comm.npy import record_from_torch
from fedsim.config.fields import setting
from fedsim.tasks.training import backward_on_next_batch
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.fedavg import FedAvgStrategy
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs


@dataclass
class FedProxParams:
    """``[strategy]`` settings of FedProx."""

    mu: float = setting(0.01, "proximal weight mu (0: FedAvg)", low=0.0, high=10.0)


class FedProxClient(ClientAlgorithm):
    """E steps of ``w <- w - lr * (grad f_i(w) + mu (w - w_global))``; upload w in fp32."""

    def __init__(self, mu: float) -> None:
        self.mu = mu

    def train(self, local: LocalRound) -> ClientUpdate:
        params = [p for p in local.model.parameters() if p.requires_grad]
        anchor = [p.detach().clone() for p in params]  # the global model
        total = 0.0
        local.model.train()
        for _ in range(local.steps):
            total += backward_on_next_batch(local.model, local.batches)
            with torch.no_grad():
                for p, w0 in zip(params, anchor, strict=True):
                    p.sub_(local.train.lr * (p.grad + self.mu * (p - w0)))
        return ClientUpdate(record_from_torch(local.model.state_dict()),
                            {"train-loss": total / max(1, local.steps)})


def build_server(params: FedProxParams, sampling: Sampling) -> FedAvgStrategy:
    return FedAvgStrategy(**flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> FedProxClient:
    return FedProxClient(float(params["mu"]))


SPEC = StrategySpec("fedprox", "FedAvg with a proximal term on the client (Li et al. 2020)",
                    FedProxParams, build_server, build_client)
