"""FedDA as the FedLion paper's code defines it (baseline of Tang & Chang, ICASSP 2024,
arXiv 2402.09941, script ``avg_fedDA_*`` in TZW1998/FedLion). The method it
stands for is Li, Huang & Huang 2023 (FedDA, "federated dual averaging"-style adaptive
momentum); this module follows the reference code, not that paper.

Server state: x and the global momentum m (0 at the start). Per round:

- downlink (x, m), fp32;
- client i: y = x, mu = m, P = 0; E steps of torch SGD with momentum (lr gamma =
  ``train.lr``, momentum ``train.momentum``, weight decay ``train.weight_decay``) on f_i, and
  beside it, with the same stochastic gradient g::

      mu <- beta * mu + (1 - beta) * g          # EMA momentum
      P  <- P + mu                              # accumulated momentum

  uplink (mu_i, P_i), both fp32: 64 bits per parameter (the local model itself is not sent);
- server: x <- x - eta_g * gamma * (1/n) sum_i P_i and m <- (1/n) sum_i mu_i
  (eta_g = ``server_lr``: 3.3 in the CIFAR script, 1 in the EMNIST one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Message

from fedsim.comm.codec import Codec
from fedsim.comm.float_codec import FloatCodec
from fedsim.config.fields import setting
from fedsim.config.schema import TrainConfig
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.coded import CodedStrategy
from strategies.local_steps import run_local_steps
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.stacked_steps import run_stacked_local_steps, stacked_content, train_in_chunks
from strategies.vector import fp32_record, model_vector, record_vector, vector_record

MOMENTUM_KEY = "momentum"


@dataclass
class FedDAParams:
    """FedDA hyperparameters (the local SGD-momentum settings are in ``[train]``)."""

    beta: float = setting(0.9, "EMA coefficient of the tracked momentum", low=0.0, high=1.0)
    server_lr: float = setting(1.0, "eta_g: x <- x - eta_g * gamma * mean(P)", low=0.0,
                               low_open=True)


class SGDMomentumWithEMA:
    """FedDA's local rule ``y <- rule(y, g)`` on one flat vector (d,) or a stack of them
    (K, d), row-wise: torch SGD with momentum and weight decay (dampening 0) on y, and beside
    it mu <- beta mu + (1 - beta) g, P <- P + mu (``acc``)."""

    def __init__(self, mu: torch.Tensor, beta: float, train: TrainConfig) -> None:
        self.mu, self.acc, self.buf = mu, torch.zeros_like(mu), None
        self.beta, self.train = beta, train

    def __call__(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        t = self.train
        self.mu = self.beta * self.mu + (1 - self.beta) * g
        self.acc = self.acc + self.mu
        d = g + t.weight_decay * y if t.weight_decay else g
        self.buf = d if self.buf is None else t.momentum * self.buf + d
        return y - t.lr * self.buf


class FedDAClient(ClientAlgorithm):
    """Local SGD-momentum; upload the EMA momentum mu and its running sum P."""

    def __init__(self, beta: float = 0.9) -> None:
        self.beta = beta

    def train(self, local: LocalRound) -> ClientUpdate:
        x = model_vector(local.model)
        mu = (record_vector(local.content[MOMENTUM_KEY], device=x.device)
              if MOMENTUM_KEY in local.content
              else torch.zeros_like(x))
        rule = SGDMomentumWithEMA(mu, self.beta, local.train)
        _, loss = run_local_steps(local.model, local.batches, local.steps, rule)
        return ClientUpdate(fp32_record(rule.acc), {"train-loss": loss},
                            extra={MOMENTUM_KEY: fp32_record(rule.mu)})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """The same rule for K clients at once, on (K, d) stacks (vectorized clients)."""
        return train_in_chunks(rounds, budget_bytes, self._train_stacked, copies=8)

    def _train_stacked(self, rounds: list[LocalRound]) -> list[ClientUpdate]:
        first = rounds[0]
        x = model_vector(first.model)
        rule = SGDMomentumWithEMA(stacked_content(rounds, MOMENTUM_KEY, x), self.beta,
                                  first.train)
        _, losses = run_stacked_local_steps(first.model, [r.batches for r in rounds],
                                            first.steps, rule)
        return [ClientUpdate(fp32_record(rule.acc[k]), {"train-loss": loss},
                             extra={MOMENTUM_KEY: fp32_record(rule.mu[k])})
                for k, loss in enumerate(losses)]


class FedDAStrategy(CodedStrategy):
    """Server half: send (x, m); x <- x - eta_g * gamma * mean_i P_i, m <- mean_i mu_i."""

    def __init__(self, server_lr: float = 1.0, lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server_lr, self.lr = server_lr, lr
        self.m: np.ndarray | None = None

    def downlink_records(self) -> dict[str, ArrayRecord]:
        if self.m is None or self.m.size != self.layout.size:
            self.m = np.zeros(self.layout.size, np.float32)
        return {MOMENTUM_KEY: vector_record(self.m)}

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        return {"arrays": FloatCodec("fp32"), MOMENTUM_KEY: FloatCodec("fp32")}

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        if self.lr is None:
            raise RuntimeError("FedDA needs the client learning rate gamma")
        mean_p = np.mean([d["arrays"] for d in decoded], axis=0, dtype=np.float64)
        self.x = self.x - self.server_lr * self.lr * mean_p
        self.m = np.mean([d[MOMENTUM_KEY] for d in decoded], axis=0,
                         dtype=np.float64).astype(np.float32)


def build_server(params: FedDAParams, sampling: Sampling) -> FedDAStrategy:
    return FedDAStrategy(server_lr=params.server_lr, **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> FedDAClient:
    return FedDAClient(FedDAParams(**params).beta)


SPEC = StrategySpec("fedda", "FedDA as in the FedLion code: SGD-momentum clients, accumulated "
                    "EMA momentum uplink", FedDAParams, build_server, build_client)
