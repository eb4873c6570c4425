"""The experiment schema: every setting of a run, its default, its doc and its allowed values.

An experiment file is TOML with the sections below; ``fedsim run CONFIG --set section.key=value``
overrides any of them. Strategy hyperparameters live in ``[strategy]`` beside ``name`` and are
validated by the chosen strategy's own parameter class (see ``strategies/registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedsim.config.errors import ConfigError
from fedsim.config.fields import setting

DNO_REWARDS = ("classifier", "brightness", "compressibility")
DNO_METHODS = ("grad", "hybrid2", "zo")
LOGGERS = ("tensorboard", "mlflow")


@dataclass
class TaskConfig:
    """What is learned and how the data is split across clients."""

    kind: str = setting("classification", "classification (cross-entropy); diffusion (a DDPM "
                        "trained on the clients' images, [diffusion]); dno (federated noise "
                        "optimisation of a frozen DDPM against the clients' private rewards, "
                        "[dno]); or a plugin's task kind (docs/extending.md)",
                        registry="fedsim.tasks.kind:TASK_KINDS")
    dataset: str = setting("digits", "dataset; digits is bundled with scikit-learn (offline); "
                           "or a data-source factory (task, seed) -> DataSource",
                           registry="fedsim.tasks.datasets:DATASETS")
    model: str = setting("logreg", "model architecture, or a factory returning an nn.Module",
                         registry="fedsim.tasks.models:MODELS")
    num_clients: int = setting(10, "number of clients (partitions)", low=1, high=100_000)
    partitioner: str = setting("dirichlet", "how the training pool is split across clients",
                               registry="fedsim.tasks.partitioning:PARTITIONERS")
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
    device: str = setting("auto", "torch device of the clients' local work: auto (a GPU where "
                          "Ray gave the client's actor one, i.e. a profile with num_gpus, or "
                          "where a deployed node has CUDA; else the CPU), cpu, cuda or cuda:N")
    node_wait_s: float = setting(300.0, "seconds a round waits for nodes it needs that are not "
                                 "connected (deployment) before it goes on with those that "
                                 "are", low=0.0)


@dataclass
class EvalConfig:
    """When and where the global model is evaluated."""

    central_every: int = setting(1, "central evaluation every k rounds (0: only at the end)",
                                 low=0)
    federated_every: int = setting(0, "federated evaluation every k rounds (0: never)", low=0)
    federated_clients: int = setting(0, "clients asked to evaluate (0: all clients)", low=0)
    target_accuracy: float = setting(0.9, "accuracy target for rounds-to-target and "
                                     "uplink-to-target", low=0.0, high=1.0)
    device: str = setting("auto", "torch device of the central evaluation in the server "
                          "process: auto (CUDA where torch sees one there, for classification "
                          "tasks; the CPU for diffusion and dno), cpu, cuda or cuda:N")


@dataclass
class OutputConfig:
    """Where results go."""

    dir: str = setting("results", "parent folder of the run's results folder")
    plots: bool = setting(True, "write PNG plots at the end of the run")
    checkpoint_every: int = setting(5, "write a resumable checkpoint every k rounds (0: never)",
                                    low=0)
    loggers: list = setting([], "experiment trackers that also receive every round's "
                                 "metrics: tensorboard (event files in the results folder), "
                                 "mlflow (one MLflow run per fedsim run); pip install "
                                 "'fedsim[tracking]'", choices=LOGGERS)
    mlflow_uri: str = setting("", "MLflow tracking URI (empty: the file store mlruns/ in the "
                              "current folder)")
    mlflow_experiment: str = setting("", "MLflow experiment of the run (empty: the run's name; "
                                     "fedsim sweep sets the sweep's name)")

    def __post_init__(self) -> None:
        # an empty list is allowed (no tracker), so the items are checked here
        for i, name in enumerate(self.loggers):
            if name not in LOGGERS:
                raise ConfigError(f"output.loggers[{i}]", name,
                                  "one of " + ", ".join(repr(n) for n in LOGGERS))
        from fedsim.tracking.base import require

        for i, name in enumerate(self.loggers):  # refused now, not after the first round
            require(name, f"output.loggers[{i}]")


@dataclass
class DiffusionConfig:
    """The DDPM of ``task.kind = "diffusion"`` (and the frozen generator of ``"dno"``): an
    epsilon-predicting MLP with time embedding, linear betas (Ho et al. 2020), DDIM samples."""

    hidden: int = setting(256, "width of the eps-MLP", low=8)
    depth: int = setting(3, "residual blocks of the eps-MLP", low=1)
    time_dim: int = setting(64, "size of the sinusoidal timestep embedding", low=2)
    num_train_steps: int = setting(1000, "T, training timesteps of the linear beta schedule",
                                   low=2)
    sample_steps: int = setting(50, "sampler steps for the evaluation samples", low=1)
    eta: float = setting(0.0, "sampler stochasticity (0: DDIM, 1: DDPM-like)", low=0.0,
                         high=1.0)
    num_samples: int = setting(64, "samples drawn (from a fixed noise) at each evaluation",
                               low=1, high=1024)
    confidence: float = setting(0.9, "quality proxy: a sample counts when the held-out "
                                "classifier's top probability is at least this", low=0.0,
                                high=1.0)


@dataclass
class DnoConfig:
    """Federated DNO (a fedsim platform extension, described in docs/diffusion.md): the noise z
    of a frozen sampler is the shared parameter, each client scores M(z) with its private reward,
    and the server holds the probability regulariser P(z) (DNO, Tang et al., arXiv 2405.18881)."""

    generator: str = setting("", "the frozen DDPM: a results folder of a diffusion run (its "
                             "checkpoint), or empty to pre-train one centrally on the "
                             "dataset's training pool")
    pretrain_steps: int = setting(1500, "Adam steps of the central pre-training", low=1)
    num_samples: int = setting(8, "samples whose noise is optimised together", low=1,
                               high=256)
    sample_steps: int = setting(20, "N, sampler steps of M(z)", low=1)
    eta: float = setting(1.0, "sampler stochasticity; eta > 0 optimises every injected noise",
                         low=0.0, high=1.0)
    reward: str = setting("classifier", "each client's private reward: classifier (log p of "
                          "the target digit under a classifier trained on its own data), "
                          "brightness (unclamped mean pixel), compressibility (zlib bytes, "
                          "non-differentiable)", choices=DNO_REWARDS)
    target_digit: int = setting(3, "digit the classifier reward asks for (-1: each client "
                                "its own most frequent label)", low=-1, high=9)
    method: str = setting("grad", "client feedback: grad (backprop through the sampler), "
                          "hybrid2 or zo (reward values only)", choices=DNO_METHODS)
    q: int = setting(4, "perturbations per step of hybrid2 / zo", low=1)
    mu: float = setting(0.01, "perturbation scale of hybrid2 / zo", low=0.0, low_open=True)
    clip: float = setting(1.0, "clients clip the norm of their feedback gradient to this",
                          low=0.0, low_open=True)
    gamma_reg: float = setting(1.0, "gamma_reg, weight of P(z) in the server's step (0: off)",
                               low=0.0)
    server_lr: float = setting(0.05, "server step size on gamma_reg * grad P(z)", low=0.0)


CORRUPTIONS = ("nan", "inf", "shape", "dtype", "truncate")
ATTACKS = ("huge-weight", "huge-values")


@dataclass
class FaultConfig:
    """Injected faults, drawn per (seed, client, round): the run must survive all of them."""

    client_exception_rate: float = setting(0.0, "probability a client's training raises",
                                           low=0.0, high=1.0)
    straggler_rate: float = setting(0.0, "probability a client is delayed", low=0.0, high=1.0)
    straggler_delay: float = setting(1.0, "seconds a straggler waits before training", low=0.0)
    actor_kill_rate: float = setting(0.0, "probability a client kills the process it runs in "
                                     "(a Ray actor on the ray engine; elsewhere it raises)",
                                     low=0.0, high=1.0)
    corrupt_rate: float = setting(0.0, "probability a client's reply is corrupted",
                                  low=0.0, high=1.0)
    corruptions: list[str] = setting(list(CORRUPTIONS), "kinds of corruption to draw from",
                                     choices=CORRUPTIONS)
    attackers: list = setting([], "partition ids of Byzantine clients that poison every train "
                              "reply with faults.attacks (a research tool; docs/robustness.md)")
    attacks: list[str] = setting(list(ATTACKS), "what an attacker does: huge-weight (claims "
                                 "num-examples = 2**53, the largest exact count), huge-values "
                                 "(every float value of its update set to 3e38, finite)",
                                 choices=ATTACKS)


AGGREGATIONS = ("mean", "median", "trimmed-mean")
WEIGHT_BOUNDS = ("partition", "fixed", "off")


@dataclass
class RobustConfig:
    """Bounded influence of one reply and robust aggregation (docs/robustness.md).

    Guards apply to every strategy in the shared server half; ``aggregation`` to the strategies
    whose replies are whole models (fedavg, fedadam): coordinate-wise median or trimmed mean
    (Yin et al. 2018, "Byzantine-Robust Distributed Learning", arXiv 1803.01498).
    """

    weight_bound: str = setting("partition", "cap on a train reply's num-examples: partition "
                                "(the size of its partition's training split, which the server "
                                "computes from the task settings; use fixed when nodes bring "
                                "their own --data-path), fixed (robust.max_examples) or off; a "
                                "reply claiming more is clamped to the cap and reported",
                                choices=WEIGHT_BOUNDS)
    max_examples: int = setting(100_000, "the cap of weight_bound = 'fixed'", low=1)
    max_update_norm: float = setting(1e4, "train replies whose update (model change; FedLion's "
                                     "momentum) has a larger L2 norm are dropped and reported "
                                     "(0: no bound; sign and integer payloads are bounded by "
                                     "their codec)", low=0.0)
    aggregation: str = setting("mean", "how fedavg/fedadam combine the client models: the "
                               "weighted mean, the coordinate-wise median or the coordinate-"
                               "wise trimmed mean (unweighted, as Flower's FedMedian and "
                               "FedTrimmedAvg)", choices=AGGREGATIONS)
    trim_fraction: float = setting(0.1, "beta of the trimmed mean: the share of the largest and "
                                   "of the smallest values dropped per coordinate", low=0.0,
                                   high=0.49)


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
    resources: dict[str, float] = setting(
        {}, "Ray custom resources per actor, e.g. { siteB = 1 }: its actors run only on nodes "
        "started with them (ray start --resources)")
    labels: dict[str, str] = setting(
        {}, "Ray node labels the actors' node must have, e.g. { zone = 'eu' } or { zone = "
        "'in(eu,us)' } (Ray's label selector; nodes started with ray start --labels)")
    accelerator_type: str = setting("", "Ray accelerator type the actors' node must have, e.g. "
                                    "'H100' or 'A10G' (ray.util.accelerators; empty: any)")


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
    phase_timeout_s: float = setting(0.0, "wall seconds a training or evaluation phase waits for "
                                     "the actors (0: no limit); clients still running then "
                                     "fail, counted in train_failures and timed_out_clients, "
                                     "and their actor is replaced", low=0.0)
    fold_replies: bool = setting(False, "each actor sums its clients' train replies before they "
                                 "travel, as pfl-research does (strategies fedavg and fedadam;"
                                 " equal to unfolded results within float tolerance)")
    fold_block: int = setting(10, "with fold_replies: consecutive clients of a device profile "
                              "that always run on one actor and fold into one reply, so the "
                              "results do not depend on the number of actors (larger: fewer "
                              "replies to move, coarser load balance)", low=1)
    client_state_backup: bool = setting(True, "the driver keeps a copy of each client's "
                                        "non-empty context.state after every call, so the "
                                        "clients of a replaced actor resume from it as on "
                                        "Flower's SuperNodes (false: they restart with empty "
                                        "state; saves moving large states every round)")
    vectorize: str = setting("auto", "vectorized clients: an actor trains the clients of its "
                             "batch that share a setup, the global model and a step count as "
                             "one batched computation (torch.func.vmap) where their strategy's "
                             "client half can (fedavg, fedadam, flwr:*, fedlion, zsignfedavg, "
                             "signsgd, sto_signsgd, ef_signsgd, fedda, fafed); the others "
                             "run one by one with a note in the log. on: do so; auto: do so in "
                             "actors that have a GPU (on the CPU the batched kernels round "
                             "differently, so auto keeps CPU runs bit-identical across "
                             "engines); off: never", choices=("auto", "on", "off"))
    vectorize_memory_mb: float = setting(1024.0, "memory bound of one batched computation: "
                                         "the clients of a batch run in chunks whose stacked "
                                         "parameters, gradients and activations fit it",
                                         low=1.0)
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
    robust: RobustConfig = field(default_factory=RobustConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    dno: DnoConfig = field(default_factory=DnoConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    @property
    def strategy_name(self) -> str:
        return str(self.strategy["name"])

    @property
    def strategy_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}
