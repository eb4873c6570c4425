"""FAFED as the FedLion paper's code defines it: "local AdamW + periodic averaging of model,
m, v and step" (baseline of Tang & Chang, ICASSP 2024, arXiv 2402.09941, script ``avg_adam_*``
in TZW1998/FedLion). It stands for Wu et al. 2023 (FAFED, "Faster Adaptive
Federated Learning"), which it simplifies; this module follows the reference code.

Server state: x, the Adam moments m, v (0 at the start) and the step count t. Per round:

- downlink (x, m, v) in fp32 and t;
- client i: y = x, m_i = m, v_i = v, t_i = t; E AdamW steps (lr gamma = ``train.lr``,
  betas (beta1, beta2), eps, decoupled weight decay lambda = ``train.weight_decay``)::

      t <- t + 1;  m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
      y <- y - gamma * ( (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + lambda y )

  uplink y, m_i, v_i in fp32 (96 bits per parameter) and t_i (a metric);
- server: unweighted means x <- mean_i y_i, m <- mean_i m_i, v <- mean_i v_i, t <- mean_i t_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Message

from fedsim.comm.codec import Codec
from fedsim.comm.float_codec import FloatCodec
from fedsim.config.fields import setting
from fedsim.config.schema import TrainConfig
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.coded import CodedStrategy, reply_int_metric
from strategies.local_steps import run_local_steps
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.stacked_steps import run_stacked_local_steps, stacked_content, train_in_chunks
from strategies.vector import fp32_record, model_vector, record_vector, vector_record

M_KEY, V_KEY, STEP_KEY = "adam-m", "adam-v", "adam-step"


@dataclass
class FAFEDParams:
    """Local AdamW settings of the reference code (lr is ``train.lr``, 1e-3 there)."""

    beta1: float = setting(0.9, "Adam beta1", low=0.0, high=1.0)
    beta2: float = setting(0.999, "Adam beta2", low=0.0, high=1.0)
    eps: float = setting(1e-6, "Adam epsilon", low=0.0, low_open=True)


class AdamWRule:
    """FAFED's local rule ``y <- rule(y, g)`` on one flat vector (d,) or a stack of them
    (K, d), row-wise: AdamW from the moments (m, v) and step count t it is given."""

    def __init__(self, m: torch.Tensor, v: torch.Tensor, step: int, beta1: float,
                 beta2: float, eps: float, train: TrainConfig) -> None:
        self.m, self.v, self.step = m, v, step
        self.beta1, self.beta2, self.eps, self.train = beta1, beta2, eps, train

    def __call__(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        b1, b2, tr = self.beta1, self.beta2, self.train
        self.step += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        m_hat, v_hat = self.m / (1 - b1 ** self.step), self.v / (1 - b2 ** self.step)
        return y - tr.lr * (m_hat / (v_hat.sqrt() + self.eps) + tr.weight_decay * y)


class FAFEDClient(ClientAlgorithm):
    """E local AdamW steps from the global (x, m, v, t); upload (y, m, v, t)."""

    def __init__(self, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-6) -> None:
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def train(self, local: LocalRound) -> ClientUpdate:
        x = model_vector(local.model)
        m = (record_vector(local.content[M_KEY], device=x.device) if M_KEY in local.content
             else torch.zeros_like(x))
        v = (record_vector(local.content[V_KEY], device=x.device) if V_KEY in local.content
             else torch.zeros_like(x))
        rule = AdamWRule(m, v, self._adam_step(local), self.beta1, self.beta2, self.eps,
                         local.train)
        y, loss = run_local_steps(local.model, local.batches, local.steps, rule)
        return ClientUpdate(fp32_record(y), {"train-loss": loss, STEP_KEY: rule.step},
                            extra={M_KEY: fp32_record(rule.m), V_KEY: fp32_record(rule.v)})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """The same AdamW steps for K clients at once, on (K, d) stacks of y, m and v."""
        if len({self._adam_step(r) for r in rounds}) != 1:
            return "the clients' Adam step counts differ"
        return train_in_chunks(rounds, budget_bytes, self._train_stacked, copies=10)

    def _train_stacked(self, rounds: list[LocalRound]) -> list[ClientUpdate]:
        first = rounds[0]
        x = model_vector(first.model)
        rule = AdamWRule(stacked_content(rounds, M_KEY, x), stacked_content(rounds, V_KEY, x),
                         self._adam_step(first), self.beta1, self.beta2, self.eps,
                         first.train)
        y, losses = run_stacked_local_steps(first.model, [r.batches for r in rounds],
                                            first.steps, rule)
        return [ClientUpdate(fp32_record(y[k]), {"train-loss": loss, STEP_KEY: rule.step},
                             extra={M_KEY: fp32_record(rule.m[k]), V_KEY: fp32_record(rule.v[k])})
                for k, loss in enumerate(losses)]

    @staticmethod
    def _adam_step(local: LocalRound) -> int:
        """The global Adam step count t the client starts from (0 in the first round)."""
        return int(local.content[STEP_KEY]["t"]) if STEP_KEY in local.content else 0


class FAFEDStrategy(CodedStrategy):
    """Server half: average the client models, Adam moments and step counts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.m: np.ndarray | None = None
        self.v: np.ndarray | None = None
        self.t = 0

    def downlink_records(self) -> dict[str, Any]:
        if self.m is None or self.m.size != self.layout.size:
            self.m = np.zeros(self.layout.size, np.float32)
            self.v = np.zeros(self.layout.size, np.float32)
        return {M_KEY: vector_record(self.m), V_KEY: vector_record(self.v),
                STEP_KEY: ConfigRecord({"t": int(self.t)})}

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        reply_int_metric(msg, STEP_KEY, 1, 2**62)
        return {"arrays": FloatCodec("fp32"), M_KEY: FloatCodec("fp32"), V_KEY: FloatCodec("fp32")}

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        def mean(key: str) -> np.ndarray:
            return np.mean([d[key] for d in decoded], axis=0, dtype=np.float64)

        self.x = mean("arrays")
        self.m = mean(M_KEY).astype(np.float32)
        self.v = np.maximum(mean(V_KEY), 0.0).astype(np.float32)
        self.t = int(round(np.mean([reply_int_metric(r, STEP_KEY, 1, 2**62) for r in replies])))


def build_server(params: FAFEDParams, sampling: Sampling) -> FAFEDStrategy:
    return FAFEDStrategy(**flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> FAFEDClient:
    p = FAFEDParams(**params)
    return FAFEDClient(p.beta1, p.beta2, p.eps)


SPEC = StrategySpec("fafed", "FAFED as in the FedLion code: local AdamW, average model, m, v "
                    "and step", FAFEDParams, build_server, build_client)
