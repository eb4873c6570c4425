"""SignSGD with majority vote (Bernstein et al., "signSGD: Compressed Optimisation for
Non-Convex Problems", ICML 2018, arXiv 1802.04434, Algorithm 3).

Client: E local SGD steps (E = 1 is SignSGD proper: the sign of one stochastic gradient), upload
sign(x - y) at 1 bit per coordinate, no noise. Server: x <- x - eta * sign(sum_i s_i).

This is z-SignFedAvg (arXiv 2302.02589) with sigma = 0 and majority vote, so both
halves are ``strategies.zsignfedavg``'s with those settings. On one-class-per-client data it
stalls (the test in tests/strategies), which is what the noise of z-SignFedAvg repairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim.config.fields import setting
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.zsignfedavg import ZSignClient, ZSignStrategy


@dataclass
class SignSGDParams:
    """The server step eta (the client lr and E are in ``[train]``)."""

    server_lr: float = setting(0.01, "server step eta: x <- x - eta * vote", low=0.0,
                               low_open=True)
    aggregation: str = setting("majority", "majority vote (the paper) or mean of signs",
                               choices=("majority", "mean"))


def build_server(params: SignSGDParams, sampling: Sampling) -> ZSignStrategy:
    return ZSignStrategy(sigma=0.0, server_lr=params.server_lr, aggregation=params.aggregation,
                         **flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> ZSignClient:
    return ZSignClient(sigma=0.0)


SPEC = StrategySpec("signsgd", "sign of the local update, majority vote (Bernstein et al. 2018)",
                    SignSGDParams, build_server, build_client)
