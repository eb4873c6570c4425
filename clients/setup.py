"""What a client needs to know about the experiment, as it travels in every instruction.

The server puts a compact JSON document under ``config["fedsim"]`` of each train/evaluate
message: the task, the seed, the local-training settings and the strategy with its
hyperparameters. Clients therefore need nothing but their node config (``partition-id``), under
every engine including real deployment, and the bytes are metered like everything else.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from fedsim.config.build import build_dataclass, to_dict
from fedsim.config.schema import (
    DiffusionConfig,
    DnoConfig,
    ExperimentConfig,
    FaultConfig,
    TaskConfig,
    TrainConfig,
)

SETUP_KEY = "fedsim"


@dataclass(frozen=True)
class ClientSetup:
    """The client-relevant part of an experiment config."""

    task: TaskConfig
    train: TrainConfig
    strategy: dict[str, Any]
    seed: int
    faults: FaultConfig = field(default_factory=FaultConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    dno: DnoConfig = field(default_factory=DnoConfig)

    def to_json(self) -> str:
        doc = {"task": to_dict(self.task), "train": to_dict(self.train),
               "strategy": self.strategy, "seed": self.seed}
        if self.faults != FaultConfig():
            doc["faults"] = to_dict(self.faults)
        if self.task.kind != "classification":
            doc["diffusion"] = to_dict(self.diffusion)
        if self.task.kind == "dno":
            doc["dno"] = to_dict(self.dno)
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @staticmethod
    def from_experiment(cfg: ExperimentConfig) -> ClientSetup:
        return ClientSetup(cfg.task, cfg.train, dict(cfg.strategy), cfg.seed, cfg.faults,
                           cfg.diffusion, cfg.dno)


@functools.lru_cache(maxsize=8)
def parse_setup(text: str) -> ClientSetup:
    """Parse (and cache) the setup document sent by the server."""
    data = json.loads(text)
    return ClientSetup(build_dataclass(TaskConfig, data["task"], "task."),
                       build_dataclass(TrainConfig, data["train"], "train."),
                       data["strategy"], int(data["seed"]),
                       build_dataclass(FaultConfig, data.get("faults", {}), "faults."),
                       build_dataclass(DiffusionConfig, data.get("diffusion", {}), "diffusion."),
                       build_dataclass(DnoConfig, data.get("dno", {}), "dno."))


@dataclass(frozen=True)
class Bound:
    """A limit a node puts on one server setting: node config ``key`` overrides ``default``."""

    setting: str  # dotted name in the setup document
    key: str  # node config entry (``fedsim deploy supernode --KEY``)
    default: float
    upper: bool = True  # an upper bound (else a lower bound)


# Defaults: generous for any experiment fedsim ships, small enough that a server cannot make a
# node work for days, allocate huge batches or switch its privacy noise off or to absurd sizes.
CLIENT_BOUNDS = (
    Bound("train.local_steps", "max-local-steps", 10_000),
    Bound("train.local_epochs", "max-local-epochs", 100),
    Bound("train.batch_size", "max-batch-size", 4096),
    Bound("strategy.sigma", "max-noise-sigma", 1e4),
    Bound("strategy.sigma", "min-noise-sigma", 0.0, upper=False),
)


def _setting(setup: ClientSetup, dotted: str) -> Any:
    section, name = dotted.split(".", 1)
    if section == "strategy":
        return setup.strategy.get(name)
    return getattr(getattr(setup, section), name, None)


def check_bounds(setup: ClientSetup, node_config: dict) -> None:
    """Refuse (ValueError naming the setting, its value and the bound) server settings
    outside this node's bounds (:data:`CLIENT_BOUNDS`, overridden by its node config)."""
    for bound in CLIENT_BOUNDS:
        value = _setting(setup, bound.setting)
        if value is None or isinstance(value, bool):
            continue
        try:
            limit = float(node_config.get(bound.key, bound.default))
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{bound.setting} = {value!r} (or node config {bound.key}) is not "
                             "a number") from None
        if (number > limit) if bound.upper else (number < limit):
            side = "at most" if bound.upper else "at least"
            raise ValueError(f"this node refuses {bound.setting} = {value!r}: it allows "
                             f"{side} {limit:g} (node config {bound.key}; raise it with "
                             f"`fedsim deploy supernode --{bound.key} N`)")


def check_node_settings(setup: ClientSetup, node_config: dict) -> None:
    """What a node checks before it works for the server: the experiment's dataset is the one
    the node was started for (``--dataset``), and every setting is within its bounds."""
    dataset = node_config.get("dataset")
    if dataset is not None and str(dataset) != setup.task.dataset:
        raise ValueError(f"this node was started with --dataset {dataset} but the experiment "
                         f"has task.dataset = {setup.task.dataset!r}; start it with --dataset "
                         f"{setup.task.dataset} or run an experiment on {dataset}")
    check_bounds(setup, node_config)
