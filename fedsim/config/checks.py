"""Checks that involve more than one field (each failure names the field to change)."""

from __future__ import annotations

import dataclasses
import math

from fedsim.config.errors import ConfigError
from fedsim.config.schema import ExperimentConfig, TrainConfig
from fedsim.tasks.device import DEVICE_CHOICES, valid_device

# Input shape each built-in model needs: name -> built-in datasets it can be trained on (a
# plugin model or dataset is not in this table and is not checked here).
MODEL_DATASETS: dict[str, tuple[str, ...]] = {
    "logreg": ("digits", "mnist", "fashion-mnist", "cifar10", "femnist"),
    "mlp": ("digits", "mnist", "fashion-mnist", "cifar10", "femnist"),
    "digits-cnn": ("digits",),
    "cnn": ("mnist", "fashion-mnist", "femnist"),
    "resnet20": ("cifar10",),
    "eps-mlp": ("digits", "mnist", "fashion-mnist", "cifar10"),
}

# Training-pool sizes of the built-in datasets (digits: after the central hold-out at the
# default 0.2).
POOL_SIZES: dict[str, int] = {"digits": 1797, "mnist": 60_000, "fashion-mnist": 60_000,
                              "cifar10": 50_000}


def check_consistency(cfg: ExperimentConfig) -> None:
    """Raise ConfigError for settings that are valid alone but not together."""
    task, train, ev = cfg.task, cfg.train, cfg.eval
    if train.clients_per_round > task.num_clients:
        raise ConfigError("train.clients_per_round", train.clients_per_round,
                          f"at most task.num_clients = {task.num_clients}")
    if ev.federated_clients > task.num_clients:
        raise ConfigError("eval.federated_clients", ev.federated_clients,
                          f"at most task.num_clients = {task.num_clients}")
    if train.local_steps == 0 and train.local_epochs == 0:
        raise ConfigError("train.local_steps", 0,
                          "local_steps or local_epochs must be at least 1")
    if not valid_device(train.device):
        raise ConfigError("train.device", train.device, DEVICE_CHOICES)
    if not valid_device(ev.device):
        raise ConfigError("eval.device", ev.device, DEVICE_CHOICES)
    if task.kind != "classification" and ev.device.startswith("cuda"):
        raise ConfigError("eval.device", ev.device,
                          f"'auto' or 'cpu' for task.kind = {task.kind!r} (its central "
                          "evaluation runs on the CPU)")
    _check_kind(cfg)
    _check_folding(cfg)
    check_ignored_settings(cfg)
    _check_local_steps_limit(cfg)
    _check_robust(cfg)
    if task.kind == "classification" and (task.model not in MODEL_DATASETS
                                          or task.dataset not in POOL_SIZES):
        _check_plugin_model_fits(cfg)
    if task.dataset in POOL_SIZES and task.dataset not in MODEL_DATASETS.get(task.model,
                                                                            (task.dataset,)):
        raise ConfigError("task.model", task.model,
                          f"cannot train on {task.dataset!r}; models for {task.dataset!r}: "
                          + ", ".join(m for m, ds in MODEL_DATASETS.items() if task.dataset in ds))
    _check_natural_split(cfg)
    pool = POOL_SIZES.get(task.dataset)
    if pool is not None:
        if task.dataset == "digits":
            pool = int(pool * (1 - task.central_test_fraction))
        if task.num_clients > pool:
            raise ConfigError("task.num_clients", task.num_clients,
                              f"at most {pool}, the size of the {task.dataset} training pool")
        if task.partitioner == "dirichlet" and task.num_clients * task.min_partition_size > pool:
            raise ConfigError("task.min_partition_size", task.min_partition_size,
                              f"at most {pool // task.num_clients} so that {task.num_clients} "
                              f"clients fit in {pool} examples")
        if task.partitioner == "shard" and task.num_clients * task.shards_per_client > pool:
            raise ConfigError("task.shards_per_client", task.shards_per_client,
                              f"at most {pool // task.num_clients} for {task.num_clients} "
                              f"clients on {pool} examples")
    if task.partitioner == "pathological" and task.classes_per_client > 10:
        raise ConfigError("task.classes_per_client", task.classes_per_client,
                          "at most 10, the number of classes")


def _check_natural_split(cfg: ExperimentConfig) -> None:
    """``task.partitioner = "natural"`` exactly for a dataset that comes divided into clients
    (its data source's ``natural_split``: FEMNIST's writers, Synthetic's devices)."""
    task = cfg.task
    if task.dataset in POOL_SIZES:  # a built-in pool: no source to build to know
        unit = ""
    else:
        from fedsim.tasks.datasets import data_source

        unit = getattr(data_source(task, cfg.seed), "natural_split", "")
    if unit and task.partitioner != "natural":
        raise ConfigError("task.partitioner", task.partitioner,
                          f"'natural' for {task.dataset} (every {unit} is one client; later "
                          f"{unit}s form the central test set)")
    if not unit and task.partitioner == "natural":
        raise ConfigError("task.partitioner", "natural",
                          f"iid, dirichlet, shard or pathological for {task.dataset}, one "
                          "pool that a partitioner splits; the natural split exists only for "
                          "datasets divided into clients, such as femnist (writers) and the "
                          "synthetic family (devices)")


def _check_plugin_model_fits(cfg: ExperimentConfig) -> None:
    """A model or dataset from a plugin: build the model for the data source's shape and
    classes and run two zero examples through it, so a mismatch is reported before the run."""
    import torch

    from fedsim.tasks.datasets import data_source
    from fedsim.tasks.models import build_model

    task = cfg.task
    source = data_source(task, cfg.seed)
    shape, classes = tuple(source.input_shape), int(source.num_classes)
    try:
        model = build_model(task.model, shape, classes)
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as err:  # noqa: BLE001 - any failure of user code is the message
        raise ConfigError("task.model", task.model,
                          f"a model for dataset {task.dataset!r} (examples of shape {shape}, "
                          f"{classes} classes); building it or a forward pass failed: "
                          f"{type(err).__name__}: {err}") from None
    if tuple(out.shape) != (2, classes):
        raise ConfigError("task.model", task.model,
                          f"a model with {classes} outputs for dataset {task.dataset!r}; it "
                          f"maps 2 examples of shape {shape} to {tuple(out.shape)}")


def _check_folding(cfg: ExperimentConfig) -> None:
    if not cfg.engine.fold_replies:
        return
    from strategies.registry import get_strategy, strategy_names

    if not get_strategy(cfg.strategy_name).folds_replies:
        folding = [n for n in strategy_names() if get_strategy(n).folds_replies]
        raise ConfigError("engine.fold_replies", True,
                          f"false for strategy {cfg.strategy_name!r}: only strategies whose "
                          f"server step is a weighted average can fold ({', '.join(folding)})")


def _check_kind(cfg: ExperimentConfig) -> None:
    """Diffusion and DNO tasks use the eps-MLP; classification never does."""
    task = cfg.task
    if task.kind == "classification" and task.model == "eps-mlp":
        raise ConfigError("task.model", task.model,
                          "a classifier (logreg, mlp, digits-cnn, cnn, resnet20); eps-mlp is "
                          "the denoiser of task.kind = 'diffusion' or 'dno'")
    if task.kind != "classification" and task.model != "eps-mlp":
        raise ConfigError("task.model", task.model,
                          f"'eps-mlp' for task.kind = {task.kind!r}")
    if task.kind == "dno":
        if not cfg.dno.generator and task.dataset != "digits":
            raise ConfigError("dno.generator", "",
                              "a diffusion run's results folder (central pre-training is "
                              "offered only for the bundled digits)")
        if cfg.dno.reward == "compressibility" and cfg.dno.method == "grad":
            raise ConfigError("dno.method", "grad",
                              "hybrid2 or zo for the non-differentiable compressibility reward")
        if cfg.dno.reward == "classifier" and task.dataset == "cifar10":
            raise ConfigError("dno.reward", "classifier",
                              "brightness or compressibility for cifar10 (the classifier "
                              "reward is a digit classifier)")


def train_settings_except(*ignored: str) -> frozenset[str]:
    """Every ``train.*`` setting but ``ignored`` (a strategy's ``StrategySpec.uses``)."""
    names = {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    unknown = {f"train.{n}" for n in ignored} - names
    if unknown:
        raise ValueError(f"not train settings: {sorted(unknown)}")
    return frozenset(names - {f"train.{n}" for n in ignored})


def check_ignored_settings(cfg: ExperimentConfig) -> None:
    """Refuse a ``train.*`` setting changed from its default that the chosen strategy's client
    half never reads (it would run exactly as with the default: a silent no-op)."""
    from strategies.registry import get_strategy

    uses = get_strategy(cfg.strategy_name).uses
    if uses is None:
        return
    for f in dataclasses.fields(TrainConfig):
        value = getattr(cfg.train, f.name)
        if f"train.{f.name}" not in uses and value != f.default:
            raise ConfigError(f"train.{f.name}", value,
                              f"{f.default!r} (the default) for strategy {cfg.strategy_name!r},"
                              f" which ignores train.{f.name}")


def _check_local_steps_limit(cfg: ExperimentConfig) -> None:
    """A strategy whose uplink bounds E (``max_local_steps`` on its parameter class, e.g.
    FedLion's 16-bit integer codec) refuses more local steps before any client fails."""
    from strategies.registry import get_strategy

    limit = getattr(get_strategy(cfg.strategy_name).params_cls, "max_local_steps", None)
    train = cfg.train
    if limit is None:
        return
    if train.local_steps > limit:
        raise ConfigError("train.local_steps", train.local_steps,
                          f"1 <= value <= {limit} for strategy {cfg.strategy_name!r}")
    pool = POOL_SIZES.get(cfg.task.dataset)
    if train.local_steps == 0 and pool is not None \
            and train.local_epochs * math.ceil(pool / train.batch_size) > limit:
        from fedsim.tasks.task import local_steps_per_client

        most = max(local_steps_per_client(cfg.task, cfg.train, cfg.seed) or [0])
        if most > limit:
            raise ConfigError("train.local_epochs", train.local_epochs,
                              f"fewer: the largest client would take {most} local steps, at "
                              f"most {limit} for strategy {cfg.strategy_name!r} (or set "
                              f"train.local_steps <= {limit})")


def _check_robust(cfg: ExperimentConfig) -> None:
    """Robust aggregation needs whole-model replies, averaged on the server; attackers must
    name partitions that exist."""
    from strategies.registry import get_strategy, strategy_names

    robust = cfg.robust
    if robust.aggregation != "mean":
        if not get_strategy(cfg.strategy_name).folds_replies:
            able = [n for n in strategy_names() if get_strategy(n).folds_replies]
            raise ConfigError("robust.aggregation", robust.aggregation,
                              f"'mean' for strategy {cfg.strategy_name!r}: median and trimmed "
                              f"mean combine whole client models ({', '.join(able)})")
        if cfg.engine.fold_replies:
            raise ConfigError("engine.fold_replies", True,
                              f"false with robust.aggregation = {robust.aggregation!r} (a "
                              "median cannot be computed from partial sums)")
    n = cfg.task.num_clients
    for pid in cfg.faults.attackers:
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid < n:
            raise ConfigError("faults.attackers", cfg.faults.attackers,
                              f"a list of partition ids, integers in [0, {n - 1}]")
