"""The experiment schema: every setting of a run, its default, its doc and its allowed values.

An experiment file is TOML with the sections below; ``fedsim run CONFIG --set section.key=value``
overrides any of them. Strategy hyperparameters live in ``[strategy]`` beside ``name`` and are
validated by the chosen strategy's own parameter class (see ``strategies/registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsim.config.fields import setting

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "femnist")
MODELS = ("logreg", "mlp", "digits-cnn", "cnn", "resnet20")
PARTITIONERS = ("iid", "dirichlet", "shard", "pathological", "natural")


@dataclass
class TaskConfig:
    """What is learned and how the data is split across clients."""

    dataset: str = setting("digits", "dataset; digits is bundled with scikit-learn (offline)",
                           choices=DATASETS)
    model: str = setting("logreg", "model architecture", choices=MODELS)
    num_clients: int = setting(10, "number of clients (partitions)", low=1, high=100_000)
    partitioner: str = setting("dirichlet", "how the training pool is split across clients",
                               choices=PARTITIONERS)
    alpha: float = setting(0.5, "Dirichlet concentration (smaller = more label skew)",
                           low=0.0, low_open=True)
    shards_per_client: int = setting(2, "shards per client for the shard partitioner", low=1)
    classes_per_client: int = setting(2, "classes per client for the pathological partitioner",
                                      low=1)
    min_partition_size: int = setting(10, "Dirichlet resamples until every client has this many",
                                      low=0)
    local_test_fraction: float = setting(0.2, "share of each client's data kept for federated "
                                         "evaluation", low=0.0, high=0.9)
    central_test_fraction: float = setting(0.2, "share of a dataset without a test split held out"
                                           " for central evaluation", low=0.0, low_open=True,
                                           high=0.9)


@dataclass
class TrainConfig:
    """Rounds, participation and the clients' local optimisation."""

    rounds: int = setting(20, "number of federated rounds", low=1, high=1_000_000)
    clients_per_round: int = setting(10, "clients sampled for training each round", low=1)
    local_steps: int = setting(0, "local optimisation steps per round (0: use local_epochs)",
                               low=0)
    local_epochs: int = setting(1, "local epochs per round when local_steps is 0", low=0)
    batch_size: int = setting(32, "local batch size", low=1)
    batch_sampling: str = setting("shuffle", "shuffle: epochs over a shuffled partition; "
                                  "replacement: draw every batch with replacement",
                                  choices=("shuffle", "replacement"))
    lr: float = setting(0.1, "client learning rate", low=0.0, low_open=True)
    momentum: float = setting(0.0, "client SGD momentum", low=0.0, high=0.999)
    weight_decay: float = setting(0.0, "client weight decay", low=0.0)


@dataclass
class EvalConfig:
    """When and where the global model is evaluated."""

    central_every: int = setting(1, "central evaluation every k rounds (0: only at the end)",
                                 low=0)
    federated_every: int = setting(0, "federated evaluation every k rounds (0: never)", low=0)
    federated_clients: int = setting(0, "clients asked to evaluate (0: all clients)", low=0)
    target_accuracy: float = setting(0.9, "accuracy target for rounds-to-target and "
                                     "uplink-to-target", low=0.0, high=1.0)


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = setting("results", "parent folder of the run's results folder")
    plots: bool = setting(True, "write PNG plots at the end of the run")
    checkpoint_every: int = setting(5, "write a resumable checkpoint every k rounds (0: never)",
                                    low=0)


CORRUPTIONS = ("nan", "inf", "shape", "dtype", "truncate")


@dataclass
class FaultConfig:
    """Injected faults, drawn per (seed, client, round): the run must survive all of them."""

    client_exception_rate: float = setting(0.0, "probability a client's training raises",
                                           low=0.0, high=1.0)
    straggler_rate: float = setting(0.0, "probability a client is delayed", low=0.0, high=1.0)
    straggler_delay: float = setting(1.0, "seconds a straggler waits before training", low=0.0)
    corrupt_rate: float = setting(0.0, "probability a client's reply is corrupted",
                                  low=0.0, high=1.0)
    corruptions: list[str] = setting(list(CORRUPTIONS), "kinds of corruption to draw from",
                                     choices=CORRUPTIONS)


@dataclass
class DeviceProfile:
    """A class of client devices: its Ray resources, speed, network and reliability."""

    name: str = setting("default", "profile name (reported per actor and in the results)")
    share: float = setting(1.0, "share of the clients with this profile (ignored when "
                           "partitions is set)", low=0.0, low_open=True, high=1.0)
    partitions: list = setting([], "explicit partition ids with this profile (overrides share)")
    num_cpus: float = setting(1.0, "Ray CPUs per actor of this profile", low=0.0, low_open=True)
    num_gpus: float = setting(0.0, "Ray GPUs per actor (fractions share a GPU)", low=0.0)
    actors: int = setting(0, "actors in this profile's pool (0: as many as its share of the "
                          "Ray resources allows, at most one per client)", low=0)
    speed: float = setting(1.0, "compute speed factor (simulated compute = measured / speed)",
                           low=0.0, low_open=True)
    uplink_mbps: float = setting(0.0, "uplink bandwidth in Mbit/s (0: unlimited)", low=0.0)
    downlink_mbps: float = setting(0.0, "downlink bandwidth in Mbit/s (0: unlimited)", low=0.0)
    latency_ms: float = setting(0.0, "one-off network latency per round trip in ms", low=0.0)
    availability: float = setting(1.0, "probability of being available in a round", low=0.0,
                                  low_open=True, high=1.0)
    dropout: float = setting(0.0, "probability of dropping out mid-round", low=0.0, high=0.999)


@dataclass
class EngineConfig:
    """The fedsim Ray engine: where it runs, device profiles and the virtual clock."""

    ray_address: str = setting("", "Ray cluster to join ('auto' or HOST:PORT); empty: start "
                               "a local Ray")
    num_cpus: int = setting(0, "logical CPUs of the local Ray (0: all cores)", low=0)
    num_gpus: float = setting(0.0, "logical GPUs of the local Ray (0: detected)", low=0.0)
    deadline_s: float = setting(0.0, "simulated seconds a phase waits for clients; replies of "
                                "slower clients are dropped (0: no deadline)", low=0.0)
    compute_timer: str = setting("cpu", "how client compute time is measured: cpu (thread CPU "
                                 "time, robust to load), wall, or fixed (fixed_compute_s)",
                                 choices=("cpu", "wall", "fixed"))
    fixed_compute_s: float = setting(1.0, "simulated compute seconds per client call at speed 1"
                                     " when compute_timer = 'fixed' (reproducible clock)",
                                     low=0.0)
    profiles: list = setting([], "device profiles, as [[engine.profiles]] tables (none: one "
                             "homogeneous profile with 1 CPU per actor)")


@dataclass
class ExperimentConfig:
    """One federated experiment: the whole resolved configuration of a run."""

    name: str = setting("experiment", "run name (used for the results folder)")
    seed: int = setting(0, "one seed for partitioning, sampling, initialisation, batches, noise",
                        low=0)
    task: TaskConfig = field(default_factory=TaskConfig)
    strategy: dict[str, Any] = field(default_factory=lambda: {"name": "fedavg"})
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def strategy_name(self) -> str:
        return str(self.strategy["name"])

    @property
    def strategy_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}
