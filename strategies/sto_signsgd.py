"""Stochastic sign SGD (Jin, Huang, He, Dai & Wu, "Stochastic-Sign SGD for Federated Learning
with Theoretical Guarantees", 2020, arXiv 2002.10940).

Client: E local SGD steps, then each coordinate of Delta = x - y is sent as +1 with probability
(B + Delta_j) / (2B) and -1 otherwise (|Delta_j| <= B), i.e. sign(Delta + B * xi) with
xi ~ Uniform[-1, 1]: the z = inf case of z-SignFedAvg with sigma = B. Server: majority vote,
x <- x - eta * sign(sum_i s_i). Both halves are ``strategies.zsignfedavg``'s with these settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim.config.fields import setting
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.zsignfedavg import ZSignClient, ZSignStrategy


@dataclass
class StoSignParams:
    """The bound B (noise scale) and the server step eta."""

    bound: float = setting(0.01, "B, the bound on |Delta_j| (uniform noise on [-B, B])",
                           low=0.0, low_open=True)
    server_lr: float = setting(0.01, "server step eta: x <- x - eta * vote", low=0.0,
                               low_open=True)


def build_server(params: StoSignParams, sampling: Sampling) -> ZSignStrategy:
    return ZSignStrategy(z="inf", sigma=params.bound, server_lr=params.server_lr,
                         aggregation="majority", **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> ZSignClient:
    return ZSignClient(z="inf", sigma=StoSignParams(**params).bound)


SPEC = StrategySpec("sto_signsgd", "stochastic sign (uniform noise, bound B), majority vote "
                    "(Jin et al. 2020)", StoSignParams, build_server, build_client)
