"""Zeroth-order feedback with shared seeds: the uplink is q + 1 loss values (a fedsim platform
extension; the seed trick of FedKSeed, Qin et al., ICML 2024,
arXiv 2312.06353, with the two-point estimator of ZO-SGD, Ghadimi & Lan 2013, Eq. 1.5).

Per round t:
- downlink: the model x and a round seed s_t (in the config record);
- client i (``ZOSeedsClient``): draws u_1..u_q ~ N(0, I) from s_t (every client the same
  directions) and returns only l_i(x) and l_i(x + mu u_j), j = 1..q, on one batch: q + 1
  floats of uplink, whatever the model size. For a DNO task l_i = -r_i(M(z)), so a client's
  black-box reward never leaves it, only q + 1 of its values;
- server (``ZOSeedsStrategy``): regenerates the u_j from s_t and forms
  g = (1/q) sum_j dbar_j u_j with dbar_j the example-weighted mean over clients of
  (l_i(x + mu u_j) - l_i(x)) / mu; clips ||g|| to ``clip`` (0: no clipping) and steps
  x <- x - server_lr * g.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedsim.config.fields import setting
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.reply_checks import WEIGHT_KEY, is_train_reply, metrics_reject_reason
from strategies.server_half import FedsimStrategyMixin
from strategies.vector import Layout, load_vector, model_vector

SEED_KEY = "zo-seed"
LOSSES_KEY = "losses"


def directions(seed: int, q: int, size: int) -> torch.Tensor:
    """The round's q shared Gaussian directions (q, size), float32, the same on both halves."""
    return torch.randn((q, size), generator=torch.Generator().manual_seed(seed))


@dataclass
class ZOSeedsParams:
    """Zeroth-order feedback settings."""

    q: int = setting(8, "directions per round (uplink: q + 1 floats per client)", low=1,
                     high=4096)
    mu: float = setting(0.01, "perturbation scale mu", low=0.0, low_open=True)
    server_lr: float = setting(0.1, "server step: x <- x - server_lr * g", low=0.0,
                               low_open=True)
    clip: float = setting(1.0, "clip ||g|| to this before the step (0: no clipping)", low=0.0)


class ZOSeedsClient(ClientAlgorithm):
    """Loss values at x and at x + mu u_j on one batch (no gradient is ever computed)."""

    def __init__(self, q: int = 8, mu: float = 0.01) -> None:
        self.q, self.mu = q, mu

    @torch.no_grad()
    def train(self, local: LocalRound) -> ClientUpdate:
        x = model_vector(local.model)
        u = directions(int(local.content["config"][SEED_KEY]), self.q, x.numel()).to(x.device)
        xb, yb = local.batches.next()
        values = []
        for point in (x, *(x + self.mu * u)):
            load_vector(local.model, point)
            values.append(float(local.batches.loss(local.model, xb, yb,
                                                   local.batches.torch_gen)))
        losses = np.asarray(values, dtype=np.float32)
        return ClientUpdate(ArrayRecord({LOSSES_KEY: Array(losses)}),
                            {"train-loss": values[0]})


class ZOSeedsStrategy(FedsimStrategyMixin, FedAvg):
    """Sends a round seed, aggregates q + 1 loss values per client into one ZO step."""

    def __init__(self, q: int, mu: float, server_lr: float, clip: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.q, self.mu, self.server_lr, self.clip = q, mu, server_lr, clip
        self.layout: Layout | None = None
        self.x: np.ndarray | None = None
        self.round_seed = 0

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.layout = Layout.of(arrays)
        self.x = self.layout.flatten(arrays)
        self.round_seed = int(np.random.SeedSequence([self.seed, server_round, 7])
                              .generate_state(1)[0])
        config = ConfigRecord({**config, SEED_KEY: self.round_seed})
        return super().configure_train(server_round, arrays, config, grid)

    def reject_reason(self, msg: Message) -> str | None:
        if (reason := metrics_reject_reason(msg)) is not None or not is_train_reply(msg):
            return reason
        record = msg.content.array_records.get("arrays")
        if record is None or list(record.keys()) != [LOSSES_KEY]:
            return f"expected ArrayRecord 'arrays' holding only {LOSSES_KEY!r}"
        losses = record[LOSSES_KEY]
        if losses.dtype != "float32" or tuple(losses.shape) != (self.q + 1,):
            return (f"arrays.{LOSSES_KEY} is {losses.dtype}{list(losses.shape)}, expected "
                    f"float32[{self.q + 1}]")
        if not np.isfinite(losses.numpy()).all():
            return f"arrays.{LOSSES_KEY} holds NaN or Inf"
        return None

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[
            ArrayRecord | None, MetricRecord | None]:
        kept = self.screen_replies(replies, "train")
        if not kept or self.layout is None or self.x is None:
            return None, None
        weights = np.array([float(m.content["metrics"][WEIGHT_KEY]) for m in kept])
        losses = np.stack([m.content["arrays"][LOSSES_KEY].numpy().astype(np.float64)
                           for m in kept])
        slopes = (losses[:, 1:] - losses[:, :1]) / self.mu  # (clients, q)
        dbar = weights @ slopes / weights.sum()
        u = directions(self.round_seed, self.q, self.layout.size).double().numpy()
        g = dbar @ u / self.q
        norm = float(np.linalg.norm(g))
        if self.clip > 0 and norm > self.clip:
            g = g * (self.clip / norm)
        self.x = self.x - self.server_lr * g
        self.round_report["zo_grad_norm"] = norm
        metrics = self.train_metrics_aggr_fn([m.content for m in kept], self.weighted_by_key)
        return self.layout.unflatten(self.x), metrics


def build_server(params: ZOSeedsParams, sampling: Sampling) -> ZOSeedsStrategy:
    return ZOSeedsStrategy(params.q, params.mu, params.server_lr, params.clip,
                           **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> ZOSeedsClient:
    return ZOSeedsClient(int(params.get("q", 8)), float(params.get("mu", 0.01)))


SPEC = StrategySpec("zo-seeds", "zeroth-order feedback with shared seeds: q + 1 loss values of "
                    "uplink per client (FedKSeed-style)", ZOSeedsParams,
                    build_server, build_client)
