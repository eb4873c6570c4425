"""FedLion (Tang & Chang, "FedLion: Faster Adaptive Federated Optimization with Fewer
Communication", ICASSP 2024, arXiv 2402.09941, Algorithm 1; official code TZW1998/FedLion).

Server state: the model x and the global momentum m (0 at the start). Per round t:

- downlink: (x, m), both fp32;
- client i (``FedLionClient``), from y = x, mu = m, E times with a stochastic gradient g at y::

      c  = beta1 * mu + (1 - beta1) * g          # interpolation, only for the direction
      y  = y - gamma * sign(c)                   # Lion step (weight decay lambda = 0)
      mu = beta2 * mu + (1 - beta2) * g          # EMA of the raw gradient

  then Delta_i = (x - y) / gamma, a sum of E values of sign(.) in {-1, 0, +1}: an integer in
  [-E, E] (``torch.sign(0) = 0`` so all 2E+1 levels occur). Uplink: Delta_i packed at
  k = ceil(log2(2E+1)) bits per coordinate (``IntCodec``) plus mu_i in fp32 (the paper), or
  in bf16/fp16 (``momentum_dtype``; a fedsim option the paper does not have);
- server (``FedLionStrategy.server_step``): x <- x - gamma * (1/n) sum_i Delta_i (identical to
  the unweighted average of the client models) and m <- (1/n) sum_i mu_i over the sampled
  clients; there is no server learning rate and client data sizes are ignored (official code).

The client tracks Delta as an exact integer count and sets y = x - gamma * Delta after each step,
which is the same iterate as the Lion recursion without floating-point drift in Delta.
Weight decay is off (lambda = 0): with lambda > 0 Delta would not be an integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message

from fedsim.comm.codec import Codec
from fedsim.comm.float_codec import FLOAT_FORMATS, FloatCodec
from fedsim.comm.int_codec import MAX_BITS as INT_MAX_BITS
from fedsim.comm.int_codec import IntCodec
from fedsim.comm.records import array_records
from fedsim.config.checks import train_settings_except
from fedsim.config.fields import setting
from fedsim.tasks.device import to_numpy
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.coded import CodedStrategy, reply_int_metric
from strategies.local_steps import run_local_steps
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.stacked_steps import run_stacked_local_steps, stacked_content, train_in_chunks
from strategies.vector import model_vector, record_vector, vector_record

MOMENTUM_KEY = "momentum"
STEPS_METRIC = "local-steps"
# the largest E whose 2E+1 levels fit IntCodec's at most 16 bits: 2E+1 <= 2**16 - 1, E = 32767
# (the bound used to be 16383, half of it: every client of a run with more steps failed)
MAX_STEPS = (2 ** INT_MAX_BITS - 1) // 2


@dataclass
class FedLionParams:
    """FedLion hyperparameters (defaults of the official scripts ``avg_lion_*.py``); the
    learning rate gamma is ``train.lr`` and is used by clients and server alike."""

    beta1: float = setting(0.9, "Lion interpolation coefficient beta1", low=0.0, high=1.0)
    beta2: float = setting(0.9, "momentum EMA coefficient beta2 (0.9 in the official code)",
                           low=0.0, high=1.0)
    momentum_dtype: str = setting("fp32", "uplink precision of the client momentum (fp32 is the "
                                  "paper; bf16/fp16 halve it)", choices=FLOAT_FORMATS)

    # E is packed in k = ceil(log2(2E+1)) <= 16 bits (IntCodec): the config check refuses more
    max_local_steps: ClassVar[int] = MAX_STEPS


class LionSteps:
    """FedLion's local rule (Tang & Chang 2024, Algorithm 1, client loop): from the global
    model x and momentum mu, each step c = b1 mu + (1 - b1) g, Delta += sign(c),
    mu = b2 mu + (1 - b2) g, y = x - gamma Delta. Works on one client's (d,) vectors or on the
    (K, d) stacks of vectorized clients alike; ``delta`` and ``mu`` hold the result."""

    def __init__(self, x: torch.Tensor, gamma: float, mu: torch.Tensor, beta1: float,
                 beta2: float) -> None:
        self.x, self.gamma, self.mu, self.beta1, self.beta2 = x, gamma, mu, beta1, beta2
        self.delta = torch.zeros_like(mu)  # integer count of signs: y = x - gamma * delta

    def __call__(self, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        c = self.beta1 * self.mu + (1 - self.beta1) * g
        self.delta.add_(torch.sign(c))
        self.mu = self.beta2 * self.mu + (1 - self.beta2) * g
        return self.x - self.gamma * self.delta


class FedLionClient(ClientAlgorithm):
    """E local Lion steps from (x, m); upload the integer Delta and the momentum mu."""

    def __init__(self, beta1: float = 0.9, beta2: float = 0.9,
                 momentum_dtype: str = "fp32") -> None:
        self.beta1, self.beta2 = beta1, beta2
        self.momentum_codec = FloatCodec(momentum_dtype)

    def train(self, local: LocalRound) -> ClientUpdate:
        gamma, steps = float(local.train.lr), int(local.steps)
        if steps > MAX_STEPS:
            raise ValueError(f"FedLion packs Delta in at most {INT_MAX_BITS} bits: E = {steps} "
                             f"local steps "
                             f"exceed {MAX_STEPS}; lower train.local_steps (or local_epochs)")
        x = model_vector(local.model)
        mu = (record_vector(local.content[MOMENTUM_KEY], device=x.device)
              if MOMENTUM_KEY in local.content
              else torch.zeros_like(x))
        lion = LionSteps(x, gamma, mu, self.beta1, self.beta2)
        _, loss = run_local_steps(local.model, local.batches, steps, lion)
        arrays = _record(IntCodec(bound=steps).encode(to_numpy(lion.delta)))
        momentum = _record(self.momentum_codec.encode(to_numpy(lion.mu)))
        return ClientUpdate(arrays, {"train-loss": loss, STEPS_METRIC: steps},
                            extra={MOMENTUM_KEY: momentum})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """The same Lion steps for K clients at once, on (K, d) stacks of Delta and mu."""
        if int(rounds[0].steps) > MAX_STEPS:
            return "E is over FedLion's 16-bit bound"  # each client alone says so
        return train_in_chunks(rounds, budget_bytes, self._train_stacked, copies=8)

    def _train_stacked(self, rounds: list[LocalRound]) -> list[ClientUpdate]:
        first = rounds[0]
        gamma, steps = float(first.train.lr), int(first.steps)
        x = model_vector(first.model)
        lion = LionSteps(x, gamma, stacked_content(rounds, MOMENTUM_KEY, x), self.beta1,
                         self.beta2)
        _, losses = run_stacked_local_steps(first.model, [r.batches for r in rounds], steps,
                                            lion)
        codec = IntCodec(bound=steps)
        return [ClientUpdate(_record(codec.encode(to_numpy(lion.delta[k]))),
                             {"train-loss": loss, STEPS_METRIC: steps},
                             extra={MOMENTUM_KEY: _record(self.momentum_codec.encode(
                                 to_numpy(lion.mu[k])))})
                for k, loss in enumerate(losses)]


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


class FedLionStrategy(CodedStrategy):
    """Server half: send (x, m); x <- x - gamma * mean_i Delta_i, m <- mean_i mu_i."""

    def __init__(self, momentum_dtype: str = "fp32", lr: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.momentum_codec = FloatCodec(momentum_dtype)
        self.lr = lr
        self.m: np.ndarray | None = None  # global momentum (float32, layout order)

    def downlink_records(self) -> dict[str, ArrayRecord]:
        if self.m is None or self.m.size != self.layout.size:
            self.m = np.zeros(self.layout.size, np.float32)
        return {MOMENTUM_KEY: vector_record(self.m)}

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        steps = reply_int_metric(msg, STEPS_METRIC, 1, MAX_STEPS)
        return {"arrays": IntCodec(bound=steps), MOMENTUM_KEY: self.momentum_codec}

    def update_payload(self, msg: Message) -> tuple[dict[str, np.ndarray], None] | None:
        """What the norm bound (``robust.max_update_norm``) limits: the decoded momentum mu_i,
        the only unbounded value of a reply (Delta_i is an integer in [-E, E] by its codec).
        None before ``reject_reason`` decoded the reply."""
        decoded = self._decoded.get(id(msg))
        if decoded is None or MOMENTUM_KEY not in array_records(msg.content):
            return None
        return {MOMENTUM_KEY: decoded[MOMENTUM_KEY]}, None

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        if self.lr is None:
            raise RuntimeError("FedLion needs the client learning rate gamma")
        mean_delta = np.mean([d["arrays"] for d in decoded], axis=0, dtype=np.float64)
        self.x = self.x - self.lr * mean_delta
        self.m = np.mean([d[MOMENTUM_KEY] for d in decoded], axis=0,
                         dtype=np.float64).astype(np.float32)


def build_server(params: FedLionParams, sampling: Sampling) -> FedLionStrategy:
    return FedLionStrategy(momentum_dtype=params.momentum_dtype,
                           **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> FedLionClient:
    p = FedLionParams(**params)
    return FedLionClient(p.beta1, p.beta2, p.momentum_dtype)


SPEC = StrategySpec("fedlion", "local Lion steps; integer update + momentum uplink "
                    "(Tang & Chang 2024)", FedLionParams, build_server, build_client,
                    uses=train_settings_except("momentum", "weight_decay"))
