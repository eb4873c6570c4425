"""Hand-made train replies for the server halves (no client, no engine)."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from clients.setup import SETUP_KEY, ClientSetup
from fedsim.config.schema import ExperimentConfig

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


class NodeGrid:
    """Just enough of a Grid for ``configure_train``: fixed node ids."""

    def __init__(self, node_ids: list[int]) -> None:
        self.node_ids = node_ids

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def setup_config(lr: float = 0.1, steps: int = 2) -> ConfigRecord:
    cfg = ExperimentConfig()
    cfg.train.lr, cfg.train.local_steps = lr, steps
    return ConfigRecord({SETUP_KEY: ClientSetup.from_experiment(cfg).to_json()})


def model_record(values: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v, dtype=np.float32))
                        for k, v in values.items()})


def reply(instruction: Message, arrays: ArrayRecord, examples: float,
          **extra: ArrayRecord) -> Message:
    """The train reply a client would send: arrays, metrics (with its weight), extras."""
    content = RecordDict({"arrays": arrays,
                          "metrics": MetricRecord({"num-examples": examples,
                                                   "train-loss": 1.0}), **extra})
    return Message(content, reply_to=instruction)


def train_instructions(strategy, nodes: list[int], arrays: ArrayRecord,
                       steps: int = 2) -> list[Message]:
    """Bind ``nodes`` (partition i = node i's index) and configure round 1."""
    strategy.bind_nodes({n: i for i, n in enumerate(nodes)}, seed=0)
    messages = list(strategy.configure_train(1, arrays, setup_config(0.1, steps),
                                             NodeGrid(nodes)))
    return sorted(messages, key=lambda m: m.metadata.dst_node_id)
