"""Strategies by name: the ``STRATEGIES`` registry of :class:`StrategySpec` objects.

A spec joins the two halves of one algorithm: a parameter dataclass (``[strategy]`` settings
with defaults, docs and allowed values), a builder for the server half (a Flower Strategy) and
the client half (a :class:`~strategies.client_half.ClientAlgorithm`).

Built-ins are entry points of group ``fedsim.strategies`` of fedsim's own distribution
(``pyproject.toml``); a user's strategy is a dotted reference (``"mylab.fedprox:SPEC"``), an
entry point of an installed package, or ``@STRATEGIES.register("name")`` (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import Strategy

from fedsim.registry import Registry, RegistryError
from strategies.client_half import ClientAlgorithm


@dataclass(frozen=True)
class Sampling:
    """How many clients the server half asks per phase (the platform fills this in)."""

    num_clients: int
    train_clients: int
    evaluate_clients: int  # 0: no federated evaluation


def no_check(params: Any) -> None:
    """A strategy without checks across its parameters (a named function: specs pickle)."""


@dataclass(frozen=True)
class StrategySpec:
    """One federated algorithm, both halves."""

    name: str
    summary: str
    params_cls: type
    build_server: Callable[[Any, Sampling], Strategy]
    build_client: Callable[[dict[str, Any]], ClientAlgorithm]
    check: Callable[[Any], None] = no_check
    folds_replies: bool = False  # its server step is a weighted average (engine.fold_replies)


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


def as_strategy_spec(obj: Any) -> StrategySpec:
    """What a strategy name or reference may stand for, made a :class:`StrategySpec`."""
    if isinstance(obj, StrategySpec):
        return obj
    # HOOK (Flower strategies): a subclass of flwr.serverapp.strategy.Strategy, such as
    # "flwr:FedProx", is turned into a StrategySpec here by the Flower-strategy adapter
    # (written on another branch): `if isinstance(obj, type) and issubclass(obj, Strategy):
    # return flower_strategy_spec(obj)`.
    raise TypeError(f"expected a strategies.registry.StrategySpec, got {type(obj).__name__} "
                    f"{getattr(obj, '__name__', obj)!r}")


STRATEGIES: Registry[StrategySpec] = Registry(
    "strategy", "fedsim.strategies", check=as_strategy_spec,
    prefixes={"flwr:": "flwr.serverapp.strategy:"})


def strategy_names() -> list[str]:
    """Every strategy name known without importing one (built-ins, plugins, decorators)."""
    return STRATEGIES.names()


def get_strategy(name: str) -> StrategySpec:
    """The strategy named ``name`` or referenced as ``"package.module:SPEC"``.

    Raises KeyError for an unknown name and RegistryError (a ValueError) for a reference that
    does not resolve to a StrategySpec."""
    if name not in STRATEGIES:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(strategy_names())}")
    return STRATEGIES.get(name)


__all__ = ["STRATEGIES", "RegistryError", "Sampling", "StrategySpec", "flower_sampling_kwargs",
           "get_strategy", "strategy_names"]
