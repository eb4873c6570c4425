"""The client half of a federated algorithm: its local update rule and its uplink encoding.

The ClientApp (``clients/client_app.py``) loads the global model arrays into the task's model,
builds a :class:`LocalRound` and calls the algorithm's ``train``; what it returns is the reply.
Algorithms never see how the message travels (Flower simulation, the fedsim Ray engine or a
real SuperNode).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ArrayRecord, RecordDict
from torch import nn

from fedsim.config.schema import TrainConfig
from fedsim.tasks.training import LocalBatches


@dataclass
class LocalRound:
    """Everything a client half may use in one round of local work."""

    model: nn.Module  # holds the global model's parameters on entry
    batches: LocalBatches  # the client's training batches, in a seeded order
    steps: int  # E, the number of local steps this round
    train: TrainConfig  # lr, momentum, weight decay
    params: dict[str, Any]  # the strategy's hyperparameters ([strategy] in the config)
    content: RecordDict  # the whole downlink content (extra arrays, e.g. FedLion's momentum)
    state: RecordDict  # this client's persistent state across rounds (context.state)
    server_round: int
    partition_id: int
    noise_seed: int  # seed of the client-local noise generator (never known to the server)


@dataclass
class ClientUpdate:
    """What goes uplink: arrays (possibly packed) and scalar metrics."""

    arrays: ArrayRecord
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, ArrayRecord] = field(default_factory=dict)  # more ArrayRecords, by key


class ClientAlgorithm(ABC):
    """Client half: local steps from the global model, then encode the update for uplink."""

    @abstractmethod
    def train(self, local: LocalRound) -> ClientUpdate:
        """Run the local update rule and return the (encoded) uplink payload."""

    def train_many(self, rounds: list[LocalRound], budget_bytes: float) -> \
            list[ClientUpdate] | str:
        """Several clients' rounds as one batched computation (vectorized clients), or the
        reason why not, in which case the caller runs them one by one with :meth:`train`.

        ``rounds`` share one model that holds the global model; each has its own batches,
        state and seeds, and each update must be exactly what :meth:`train` would return,
        to float rounding. ``budget_bytes`` bounds the memory of one batched computation.
        The default cannot."""
        return f"{type(self).__name__} has no batched form"
