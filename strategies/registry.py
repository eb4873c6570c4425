"""Strategies by name: each module in ``STRATEGY_MODULES`` defines ``SPEC``, a StrategySpec.

A spec joins the two halves of one algorithm: a parameter dataclass (``[strategy]`` settings
with defaults, docs and allowed values), a builder for the server half (a Flower Strategy) and
the client half (a :class:`~strategies.client_half.ClientAlgorithm`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import Strategy

from strategies.client_half import ClientAlgorithm

STRATEGY_MODULES = (
    "strategies.fedavg",
    "strategies.fedadam",
    "strategies.fedlion",
    "strategies.zsignfedavg",
    "strategies.signsgd",
    "strategies.sto_signsgd",
    "strategies.ef_signsgd",
    "strategies.fedda",
    "strategies.fafed",
    "strategies.zo_seeds",
)


@dataclass(frozen=True)
class Sampling:
    """How many clients the server half asks per phase (the platform fills this in)."""

    num_clients: int
    train_clients: int
    evaluate_clients: int  # 0: no federated evaluation


@dataclass(frozen=True)
class StrategySpec:
    """One federated algorithm, both halves."""

    name: str
    summary: str
    params_cls: type
    build_server: Callable[[Any, Sampling], Strategy]
    build_client: Callable[[dict[str, Any]], ClientAlgorithm]
    check: Callable[[Any], None] = lambda params: None
    folds_replies: bool = False  # its server step is a weighted average (engine.fold_replies)
    # the ``train.*`` settings its client half uses (None: all); configs that change any other
    # from its default are refused (fedsim.config.checks.check_ignored_settings)
    uses: frozenset[str] | None = None


def flower_sampling_kwargs(sampling: Sampling) -> dict[str, Any]:
    """Keyword arguments for a Flower FedAvg-family constructor that sample exactly as asked."""
    n = sampling.num_clients
    return {
        "fraction_train": sampling.train_clients / n,
        "min_train_nodes": sampling.train_clients,
        "fraction_evaluate": sampling.evaluate_clients / n,
        "min_evaluate_nodes": sampling.evaluate_clients,
        "min_available_nodes": max(sampling.train_clients, sampling.evaluate_clients, 1),
    }


_SPECS: dict[str, StrategySpec] = {}


def _load() -> dict[str, StrategySpec]:
    if not _SPECS:
        for module in STRATEGY_MODULES:
            spec: StrategySpec = importlib.import_module(module).SPEC
            _SPECS[spec.name] = spec
    return _SPECS


def strategy_names() -> list[str]:
    return sorted(_load())


def get_strategy(name: str) -> StrategySpec:
    specs = _load()
    if name not in specs:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]
