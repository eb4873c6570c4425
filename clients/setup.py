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
