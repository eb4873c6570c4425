"""z-SignFedAvg (Tang, Wang & Chang, "z-SignFedAvg: A Unified Stochastic Sign-based Compression
for Federated Learning", AAAI 2024, arXiv 2302.02589).

Per round t:

- downlink: the model x (fp32);
- client i (``ZSignClient``): y = x; E local SGD steps with lr gamma on f_i;
  Delta_i = (x - y) * s, with ``delta_scale`` s in {1 ("none"), 1/gamma ("1/lr"),
  1/(gamma E) ("1/(lr*E)")} (a fedsim option); uplink the 1-bit payload
  ``sign(Delta_i + sigma * xi_i)``, xi_i ~ p_z i.i.d. (density ~ exp(-|x|^z / z): z = 1
  Laplace, z = 2 Gaussian, z = inf uniform on [-1, 1], any z >= 1 by the Gamma construction,
  ``fedsim.comm.noise``), drawn from a client-local generator seeded by ``noise_seed``
  (``clients.noise_source``: from a secret of a deployed node, which the server cannot
  reproduce; in simulation from the experiment seed, partition id and round, which the
  server can reproduce, for bit-for-bit repeatable runs);
- server (``ZSignStrategy.server_step``): x <- x - eta * A_t, where A_t is
  ``mean`` (1/n) sum_i s_i (the paper), ``majority`` sign(sum_i s_i) (SignSGD-MV), or
  ``groups``: the clients (partition order) are split into ``num_groups`` groups, each votes
  sign(sum), and the votes are averaged (as ``--glb_sign_allreduce n`` in TZW1998/SignOpt).

Step parametrisation (a fedsim choice): eta = sigma * server_lr / (2 p_z(0)), so
that E[eta s_i] ~= server_lr * Delta_i near 0 (exactly for z = inf when |Delta_i| <= sigma): the
server then acts like FedAvg with server learning rate ``server_lr`` on the scaled Delta, plus
quantisation noise. With delta_scale = 1/lr the scaled Delta is divided by gamma, so the server
step is multiplied back by gamma (1/(gamma E): by gamma E). This parametrisation is for the mean
of signs; with sigma = 0 (plain SignSGD / SignFedAvg) it would give eta = 0, and a vote
(majority, groups) does not estimate Delta, so in those cases eta = server_lr directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message

from fedsim.comm import noise
from fedsim.comm.codec import Codec
from fedsim.comm.sign_codec import SignCodec
from fedsim.config.errors import ConfigError
from fedsim.config.fields import setting
from fedsim.tasks.device import to_numpy
from fedsim.tasks.training import sgd_steps
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
from strategies.coded import CodedStrategy, reply_int_metric
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.stacked_steps import run_stacked_sgd
from strategies.vector import model_vector

STEPS_METRIC = "local-steps"
DELTA_SCALES = ("none", "1/lr", "1/(lr*E)")
AGGREGATIONS = ("mean", "majority", "groups")


@dataclass
class ZSignParams:
    """z-SignFedAvg hyperparameters (the client lr gamma and E are ``train.lr`` and the local
    steps/epochs)."""

    z: object = setting("inf", "noise shape z >= 1: 1 Laplace, 2 Gaussian, inf uniform, or any "
                     "number >= 1 (Gamma construction)")
    sigma: float = setting(0.01, "noise scale sigma (0: plain sign, i.e. SignSGD)", low=0.0)
    server_lr: float = setting(1.0, "effective server learning rate eta_eff on the scaled "
                               "Delta (eta = sigma * eta_eff / (2 p_z(0)))", low=0.0,
                               low_open=True)
    delta_scale: str = setting("none", "scaling of Delta before the noisy sign",
                               choices=DELTA_SCALES)
    aggregation: str = setting("mean", "mean of signs (the paper), majority vote, or votes "
                               "within groups averaged", choices=AGGREGATIONS)
    num_groups: int = setting(2, "number of groups for aggregation = 'groups'", low=1)


def delta_factor(delta_scale: str, lr: float, steps: int) -> float:
    """The factor s applied to Delta = x - y before the noisy sign (``delta_scale``)."""
    return {"none": 1.0, "1/lr": 1.0 / lr, "1/(lr*E)": 1.0 / (lr * steps)}[delta_scale]


def noisy_sign(v: torch.Tensor, sigma: float, z: str, seed: int) -> torch.Tensor:
    """sign(v + sigma * xi), xi ~ p_z from a generator seeded with the client's ``seed``."""
    return noise.perturbed_sign(v, sigma, z, torch.Generator().manual_seed(seed))


class ZSignClient(ClientAlgorithm):
    """E local SGD steps; upload sign(s * Delta + sigma * xi) at 1 bit per coordinate."""

    def __init__(self, z: str = "inf", sigma: float = 0.01, delta_scale: str = "none") -> None:
        noise.parse_z(z)
        self.z, self.sigma, self.delta_scale = z, sigma, delta_scale

    def train(self, local: LocalRound) -> ClientUpdate:
        t = local.train
        x = model_vector(local.model)
        loss = sgd_steps(local.model, local.batches, local.steps, t.lr, t.momentum,
                         t.weight_decay)
        v = (x - model_vector(local.model)) * delta_factor(self.delta_scale, t.lr, local.steps)
        signs = noisy_sign(v, self.sigma, self.z, local.noise_seed)
        bits = SignCodec().encode(to_numpy(signs))
        return ClientUpdate(ArrayRecord({k: Array(a) for k, a in bits.items()}),
                            {"train-loss": loss, STEPS_METRIC: local.steps})

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """The K clients' local SGD as one computation; then, per client, its noisy sign from
        its own generator (seeded by its ``noise_seed``, drawn as alone)."""
        stacked = run_stacked_sgd(rounds, budget_bytes)
        if isinstance(stacked, str):
            return stacked
        x, y, losses = stacked
        t, steps = rounds[0].train, rounds[0].steps
        v = (x - y) * delta_factor(self.delta_scale, t.lr, steps)
        updates = []
        for k, (local, loss) in enumerate(zip(rounds, losses, strict=True)):
            bits = SignCodec().encode(to_numpy(
                noisy_sign(v[k], self.sigma, self.z, local.noise_seed)))
            updates.append(ClientUpdate(ArrayRecord({n: Array(a) for n, a in bits.items()}),
                                        {"train-loss": loss, STEPS_METRIC: steps}))
        return updates


def aggregate_signs(signs: list[np.ndarray], aggregation: str, num_groups: int = 1) -> \
        np.ndarray:
    """Mean of the ±1 vectors, their majority vote sign(sum), or the mean of group votes."""
    stacked = np.asarray(signs, dtype=np.float64)
    if aggregation == "mean":
        return stacked.mean(axis=0)
    if aggregation == "majority":
        return np.sign(stacked.sum(axis=0))
    groups = np.array_split(np.arange(len(signs)), min(num_groups, len(signs)))
    return np.mean([np.sign(stacked[g].sum(axis=0)) for g in groups], axis=0)


class ZSignStrategy(CodedStrategy):
    """Server half: decode the packed signs, aggregate, x <- x - eta * A_t."""

    def __init__(self, z: str = "inf", sigma: float = 0.01, server_lr: float = 1.0,
                 delta_scale: str = "none", aggregation: str = "mean", num_groups: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.z, self.sigma, self.server_lr = z, sigma, server_lr
        self.delta_scale, self.aggregation, self.num_groups = delta_scale, aggregation, num_groups

    def step_size(self, replies: list[Message]) -> float:
        """eta = sigma * server_lr / (2 p_z(0)) for the mean of noisy signs (else server_lr),
        times the mean of
        the clients' 1/s so that the step is in parameter units again (1 for "none")."""
        eta = (noise.server_step(self.sigma, self.z, self.server_lr)
               if self.sigma > 0 and self.aggregation == "mean" else self.server_lr)
        if self.delta_scale == "none":
            return eta
        if self.lr is None:
            raise RuntimeError(f"delta_scale {self.delta_scale!r} needs the client lr")
        unscale = [1.0 / delta_factor(self.delta_scale, self.lr,
                                      reply_int_metric(m, STEPS_METRIC, 1, 10**9))
                   for m in replies]
        return eta * float(np.mean(unscale))

    def reply_codecs(self, msg: Message) -> dict[str, Codec]:
        reply_int_metric(msg, STEPS_METRIC, 1, 10**9)  # needed by step_size
        return {"arrays": SignCodec()}

    def server_step(self, decoded: list[dict[str, np.ndarray]], replies: list[Message]) -> None:
        votes = aggregate_signs([d["arrays"] for d in decoded], self.aggregation,
                                self.num_groups)
        self.x = self.x - self.step_size(replies) * votes


def check(params: ZSignParams) -> None:
    """Validate z and normalise it to a string ("inf", "1", "2", "3.5", ...)."""
    try:
        z = noise.parse_z(params.z)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError("strategy.z", params.z, "a number >= 1, 'inf', 'laplace', 'gaussian' "
                          "or 'uniform'") from err
    params.z = "inf" if math.isinf(z) else f"{z:g}"


def build_server(params: ZSignParams, sampling: Sampling) -> ZSignStrategy:
    return ZSignStrategy(z=params.z, sigma=params.sigma, server_lr=params.server_lr,
                         delta_scale=params.delta_scale, aggregation=params.aggregation,
                         num_groups=params.num_groups, **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> ZSignClient:
    p = ZSignParams(**params)
    return ZSignClient(p.z, p.sigma, p.delta_scale)


SPEC = StrategySpec("zsignfedavg", "noisy 1-bit sign of the local update, z-distributed noise "
                    "(Tang et al. 2024)", ZSignParams, build_server, build_client, check)
