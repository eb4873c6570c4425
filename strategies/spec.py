"""What a federated algorithm is to fedsim: a :class:`StrategySpec` joining its two halves,
and the :class:`Sampling` the platform gives its server half.

Kept apart from the registry (``strategies/registry.py``) so that what builds specs (the
built-in strategies, the Flower-strategy adapter) never imports the registry that finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.serverapp.strategy import Strategy

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
