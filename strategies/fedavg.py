"""FedAvg (McMahan et al., AISTATS 2017, arXiv 1602.05629): E local SGD steps per client, then
the server averages the client models weighted by their number of examples (Flower's own
``FedAvg`` server half; uplink 32 bits per parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strategies.averaging import ViewAveragingFedAvg
from strategies.coded import ModelRepliesMixin
from strategies.local_sgd import LocalSGD
from strategies.registry import Sampling, StrategySpec, flower_sampling_kwargs
from strategies.robust import GuardedFoldMixin
from strategies.server_half import FedsimStrategyMixin


class FedAvgStrategy(GuardedFoldMixin, ModelRepliesMixin, FedsimStrategyMixin,
                     ViewAveragingFedAvg):
    """Flower's FedAvg with fedsim's deterministic sampling and reply screening
    (a reply must be an fp32 model with the global model's keys, shapes and finite values)."""


@dataclass
class FedAvgParams:
    """FedAvg has no server hyperparameters (the client lr is ``train.lr``)."""


def build_server(params: FedAvgParams, sampling: Sampling) -> FedAvgStrategy:
    return FedAvgStrategy(**flower_sampling_kwargs(sampling))


def build_client(params: dict[str, Any]) -> LocalSGD:
    return LocalSGD()


SPEC = StrategySpec("fedavg", "federated averaging of local SGD models (McMahan et al. 2017)",
                    FedAvgParams, build_server, build_client, folds_replies=True)
