"""Any Flower strategy class as a fedsim strategy: ``[strategy] name = "flwr:FedProx"``.

:func:`flower_strategy_spec` turns a subclass of Flower's ``FedAvg`` (Flower's own FedAvgM,
FedProx, FedAdagrad, FedAdam, FedYogi, FedMedian, FedTrimmedAvg, Krum, MultiKrum, Bulyan,
QFedAvg, or a user's) into a :class:`~strategies.registry.StrategySpec`:

- its server half is the class itself behind :class:`FedsimStrategyMixin` (deterministic
  sampling, ordered replies, reply screening, model dtypes kept), so it is metered and reported
  like every fedsim strategy;
- its ``[strategy]`` settings are the constructor's scalar arguments, with Flower's defaults
  and the first line of Flower's own parameter docs; the sampling arguments come from
  ``train.clients_per_round``, the client learning rate (FedOpt's ``eta_l``, QFedAvg's
  ``client_learning_rate``) from ``train.lr``, and a constructor that refuses a value is
  reported as a config error naming the setting;
- its client half is local SGD with the whole model uplink in fp32, plus FedProx's proximal
  term for strategies that send ``proximal-mu`` (:mod:`strategies.local_prox`).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedAvgM, FedProx, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from clients.setup import SETUP_KEY, parse_setup
from fedsim.config.errors import ConfigError
from fedsim.config.fields import setting
from strategies.client_half import ClientAlgorithm
from strategies.coded import ModelRepliesMixin
from strategies.local_prox import LocalProx
from strategies.local_sgd import LocalSGD
from strategies.server_half import FedsimStrategyMixin
from strategies.spec import Sampling, StrategySpec, flower_sampling_kwargs

PLATFORM_ARGS = frozenset({
    "fraction_train", "fraction_evaluate", "min_train_nodes", "min_evaluate_nodes",
    "min_available_nodes", "weighted_by_key", "arrayrecord_key", "configrecord_key",
    "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn"})
"""Constructor arguments fedsim sets itself (sampling, record keys, metric aggregation)."""
CLIENT_LR_ARGS = frozenset({"eta_l", "client_learning_rate"})
"""The client learning rate some Flower strategies take: fedsim's ``train.lr``."""
FIXED_ARGS = {"train_loss_key": "train-loss"}  # QFedAvg reads the clients' training loss
SCALARS = (bool, int, float, str)
WEIGHTED_MEANS = (FedOpt, FedAvgM, FedProx)
"""Strategies whose aggregate is the weighted mean of the replies (FedAvg itself included
below): an engine may fold their replies (``engine.fold_replies``)."""
UNSUPPORTED = {"FedXgbBagging": "XGBoost trees", "FedXgbCyclic": "XGBoost trees"}


def flower_strategy_spec(cls: type, name: str | None = None) -> StrategySpec:
    """The fedsim strategy of Flower strategy class ``cls`` (TypeError if it cannot be one)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Flower Strategy class")
    if cls.__name__ in UNSUPPORTED:
        raise TypeError(f"Flower's {cls.__name__} aggregates {UNSUPPORTED[cls.__name__]}, "
                        "not model arrays trained by local SGD")
    if not issubclass(cls, FedAvg):
        raise TypeError(f"{cls.__qualname__} does not derive from Flower's FedAvg, whose "
                        "sampling and reply handling fedsim builds on (Flower's differential "
                        "privacy wrappers wrap another strategy: not supported by name)")
    name = name or default_name(cls)
    arguments = inspect.signature(cls.__init__).parameters
    params_cls = _params_dataclass(cls, arguments)
    mixins: tuple[type, ...] = (FedsimStrategyMixin,)
    folds = cls is FedAvg or issubclass(cls, WEIGHTED_MEANS)
    if folds:
        mixins = (ModelRepliesMixin, *mixins)
    server_cls = type(f"Fedsim{cls.__name__}", (*mixins, _ClientLearningRate, cls),
                      {"__doc__": f"Flower's {cls.__qualname__} with fedsim's sampling and "
                                  "reply screening."})

    def constructor_kwargs(params: Any, sampling: Sampling) -> dict[str, Any]:
        kwargs = {k: v for k, v in flower_sampling_kwargs(sampling).items() if k in arguments}
        kwargs.update({k: v for k, v in FIXED_ARGS.items() if k in arguments})
        kwargs.update({k: 0.1 for k in CLIENT_LR_ARGS if k in arguments})  # set per round
        kwargs.update(dataclasses.asdict(params))
        return kwargs

    def build_server(params: Any, sampling: Sampling) -> Strategy:
        return server_cls(**constructor_kwargs(params, sampling))

    def check(params: Any) -> None:
        """Let Flower's constructor judge the values (the sampling is a placeholder)."""
        try:
            cls(**constructor_kwargs(params, Sampling(2, 2, 0)))
        except (ValueError, TypeError, AssertionError) as err:
            fields = [f.name for f in dataclasses.fields(params)]
            named = next((f for f in fields if f in str(err)), None)
            raise ConfigError(f"strategy.{named}" if named else "strategy", str(err),
                              f"values that Flower's {cls.__name__} accepts") from None

    client: type[ClientAlgorithm] = LocalProx if issubclass(cls, FedProx) else LocalSGD
    summary = _first_line(inspect.getdoc(cls)) or cls.__qualname__
    return StrategySpec(name, f"Flower's {cls.__name__}: {summary}", params_cls, build_server,
                        lambda params: client(), check=check, folds_replies=folds)


def default_name(cls: type) -> str:
    """``flwr:Name`` for Flower's own strategies, ``module:Name`` for anyone else's."""
    module = cls.__module__
    if module.startswith("flwr.serverapp.strategy"):
        return f"flwr:{cls.__name__}"
    return f"{module}:{cls.__qualname__}"


class _ClientLearningRate:
    """FedOpt's ``eta_l`` and QFedAvg's ``client_learning_rate`` follow ``train.lr``, read
    each round from the setup document the clients receive (the same lr they use)."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        if SETUP_KEY in config:
            lr = parse_setup(str(config[SETUP_KEY])).train.lr
            for key in CLIENT_LR_ARGS:
                if hasattr(self, key):
                    setattr(self, key, lr)
        return super().configure_train(server_round, arrays, config, grid)  # type: ignore


def _params_dataclass(cls: type, arguments: Any) -> type:
    """A ``[strategy]`` dataclass of the constructor's own scalar arguments."""
    docs = parameter_docs(inspect.getdoc(cls) or "")
    fields = []
    for arg in arguments.values():
        if arg.name == "self" or arg.name in PLATFORM_ARGS | CLIENT_LR_ARGS | set(FIXED_ARGS):
            continue
        if arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        default = arg.default
        if default is inspect.Parameter.empty or not isinstance(default, SCALARS):
            continue  # callables, None-able hooks: Flower's defaults apply
        doc = docs.get(arg.name) or f"{cls.__name__}'s {arg.name}"
        fields.append((arg.name, type(default), setting(default, doc)))
    params = dataclasses.make_dataclass(f"{cls.__name__}Params", fields)
    params.__doc__ = f"The settings of Flower's {cls.__qualname__} (its constructor's)."
    return params


def parameter_docs(docstring: str) -> dict[str, str]:
    """First sentence of each ``name : type`` entry of a numpydoc Parameters section."""
    out: dict[str, str] = {}
    lines = docstring.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\w+) : ", line)
        if match and i + 1 < len(lines):
            text = []
            for follow in lines[i + 1:]:
                if not follow.startswith((" ", "\t")) or not follow.strip():
                    break
                text.append(follow.strip())
            sentence = " ".join(text).split(". ")[0].rstrip(".")
            if sentence:
                out[match.group(1)] = sentence
    return out


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].rstrip(".") if doc and doc.strip() else ""
