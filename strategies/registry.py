"""Strategies by name: the ``STRATEGIES`` registry of :class:`StrategySpec` objects.

A spec joins the two halves of one algorithm: a parameter dataclass (``[strategy]`` settings
with defaults, docs and allowed values), a builder for the server half (a Flower Strategy) and
the client half (a :class:`~strategies.client_half.ClientAlgorithm`).

Built-ins are entry points of group ``fedsim.strategies`` of fedsim's own distribution
(``pyproject.toml``); a user's strategy is a dotted reference (``"mylab.fedprox:SPEC"``), an
entry point of an installed package, or ``@STRATEGIES.register("name")`` (docs/extending.md).
"""

from __future__ import annotations

from typing import Any

from fedsim.registry import Registry, RegistryError
from strategies.spec import Sampling, StrategySpec, flower_sampling_kwargs, no_check


def as_strategy_spec(obj: Any) -> StrategySpec:
    """What a strategy name or reference may stand for, made a :class:`StrategySpec`."""
    if isinstance(obj, StrategySpec):
        return obj
    from flwr.serverapp.strategy import Strategy

    if isinstance(obj, type) and issubclass(obj, Strategy):  # "flwr:FedProx", a user's class
        from strategies.flower_adapter import flower_strategy_spec

        return flower_strategy_spec(obj)
    raise TypeError(f"expected a strategies.registry.StrategySpec or a Flower Strategy class, "
                    f"got {type(obj).__name__} {getattr(obj, '__name__', obj)!r}")


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
           "get_strategy", "no_check", "strategy_names"]
