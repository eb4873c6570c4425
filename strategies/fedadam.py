"""FedAdam (Reddi et al., ICLR 2021, "Adaptive Federated Optimization", arXiv 2003.00295,
Algorithm 2): clients run local SGD; the server treats the mean model change as a
pseudo-gradient and applies Adam: m <- b1 m + (1-b1) D, v <- b2 v + (1-b2) D^2,
x <- x + eta * m / (sqrt(v) + tau) (Flower's ``FedAdam``, with its bias correction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import FedAdam

from fedsim.config.fields import setting
from strategies.averaging import ViewAveragingFedAvg
from strategies.coded import ModelRepliesMixin
from strategies.local_sgd import LocalSGD
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.robust import GuardedFoldMixin
from strategies.server_half import FedsimStrategyMixin


class FedAdamStrategy(GuardedFoldMixin, ModelRepliesMixin, FedsimStrategyMixin, FedAdam,
                      ViewAveragingFedAvg):
    """Flower's FedAdam with fedsim's deterministic sampling and reply screening
    (a reply must be an fp32 model with the global model's keys, shapes and finite values).

    Flower's FedAdam returns float64 arrays (its moments are float64), which would double the
    downlink; the mixin casts the new model back to the model's own dtypes (float32).
    ``ViewAveragingFedAvg`` comes after FedAdam in the MRO, so FedAdam's mean model (the
    pseudo-gradient's) is computed from npy views, or robustly (``robust.aggregation``).
    """


@dataclass
class FedAdamParams:
    """Server-side Adam hyperparameters (Reddi et al. 2021, Algorithm 2)."""

    eta: float = setting(0.01, "server learning rate", low=0.0, low_open=True)
    beta_1: float = setting(0.9, "first-moment decay", low=0.0, high=0.9999)
    beta_2: float = setting(0.99, "second-moment decay", low=0.0, high=0.9999)
    tau: float = setting(1e-3, "adaptivity (added to sqrt(v))", low=0.0, low_open=True)


def build_server(params: FedAdamParams, sampling: Sampling) -> FedAdamStrategy:
    return FedAdamStrategy(**flower_sampling_kwargs(sampling), eta=params.eta,
                           beta_1=params.beta_1, beta_2=params.beta_2, tau=params.tau)


def build_client(params: dict[str, Any]) -> LocalSGD:
    return LocalSGD()


SPEC = StrategySpec("fedadam", "server-side Adam on the mean client update (Reddi et al. 2021)",
                    FedAdamParams, build_server, build_client, folds_replies=True)
