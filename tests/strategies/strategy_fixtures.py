"""Helpers for the strategy tests: tiny local rounds, hand-made replies, a node-id-only Grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from clients.setup import SETUP_KEY, ClientSetup
from fedsim.cli import main
from fedsim.config.schema import ExperimentConfig, TrainConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.training import LocalBatches
from strategies.client_half import ClientUpdate, LocalRound

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class NodeGrid:
    """Just enough of a Grid for ``configure_train``: fixed node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def tiny_data(n: int = 48, features: int = 6, classes: int = 3, seed: int = 0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.normal(size=(n, features)).astype(np.float32),
                        rng.integers(0, classes, size=n).astype(np.int64))


def tiny_model(seed: int = 0, features: int = 6, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(features, classes)


def local_round(model: nn.Module, data: ArrayDataset, steps: int, lr: float, *,
                content: RecordDict | None = None, state: RecordDict | None = None,
                params: dict[str, Any] | None = None, noise_seed: int = 7,
                partition_id: int = 0, batch_size: int = 8) -> LocalRound:
    train = TrainConfig(lr=lr, local_steps=steps, batch_size=batch_size)
    return LocalRound(model=model, batches=LocalBatches(data, batch_size, "shuffle", 3),
                      steps=steps, train=train, params=params or {},
                      content=content if content is not None else RecordDict(),
                      state=state if state is not None else RecordDict(), server_round=1,
                      partition_id=partition_id, noise_seed=noise_seed)


def setup_config(lr: float, steps: int) -> ConfigRecord:
    cfg = ExperimentConfig()
    cfg.train.lr, cfg.train.local_steps = lr, steps
    return ConfigRecord({SETUP_KEY: ClientSetup.from_experiment(cfg).to_json()})


def reply_to(instruction: Message, update: ClientUpdate, examples: int = 10) -> Message:
    """The reply a ClientApp would send for ``update`` (as in clients/client_app.py)."""
    metrics = {k: float(v) for k, v in update.metrics.items()}
    metrics["num-examples"] = examples
    content = RecordDict({"arrays": update.arrays, "metrics": MetricRecord(metrics),
                          **update.extra})
    return Message(content, reply_to=instruction)


def instruction(node_id: int, content: RecordDict | None = None) -> Message:
    return Message(content if content is not None else RecordDict(), dst_node_id=node_id,
                   message_type=MessageType.TRAIN)


def run_config(out: Path, config: str, *overrides: str) -> Path:
    args = ["run", str(CONFIGS / config), "--out", str(out), "--engine", "inprocess"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return out
