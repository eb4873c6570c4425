"""The fedsim ClientApp (Flower Message API): one app for every strategy, task and engine.

``train`` loads the global model, runs the strategy's client half and replies with its
(encoded) update; ``evaluate`` scores the global model on the client's local test split;
``query`` tells the server which partition this node holds (for deterministic sampling).
"""

from __future__ import annotations

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.faults import before_training, corrupt, draw_faults, poison
from clients.runtime import client_device, load_global_model, local_data, model_for, round_seed
from clients.setup import SETUP_KEY, ClientSetup, parse_setup
from fedsim.tasks.kind import task_kind
from fedsim.tasks.task import augmentation
from fedsim.tasks.training import LocalBatches, num_local_steps
from strategies.client_half import LocalRound
from strategies.registry import get_strategy

torch.set_num_threads(1)

app = ClientApp()
# The handlers below only read the instruction's records (replies are new records), so the Ray
# engine may hand every message of a batch the same shared global-model record.
app.fedsim_keeps_inputs = True


def _partition_id(context: Context) -> int:
    return int(context.node_config["partition-id"])


def _setup_partition(context: Context, setup: ClientSetup) -> int:
    """This node's partition id, checked against the experiment (a SuperNode started with
    ``--partition-id``/``--num-partitions`` for another experiment fails with the fix)."""
    pid = _partition_id(context)
    if _data_path(context) is not None:  # its own data file: the id only names the client
        return pid
    n = setup.task.num_clients
    declared = context.node_config.get("num-partitions")
    if declared is not None and int(declared) != n:
        raise ValueError(f"this node was started with num-partitions {declared} but the "
                         f"experiment has task.num_clients = {n}; start it with "
                         f"--num-partitions {n}")
    if not 0 <= pid < n:
        raise ValueError(f"this node holds partition-id {pid} but the experiment has "
                         f"task.num_clients = {n} (partitions 0..{n - 1})")
    return pid


def _data_path(context: Context) -> str | None:
    """A deployed SuperNode's own data file (``fedsim deploy supernode --data-path``)."""
    return str(context.node_config["data-path"]) if "data-path" in context.node_config else None


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Report this node's partition id."""
    info = ConfigRecord({"partition-id": _partition_id(context)})
    return Message(RecordDict({"node": info}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training with the strategy's client half."""
    config = msg.content["config"]
    setup = parse_setup(str(config[SETUP_KEY]))
    server_round = int(config["server-round"])
    pid = _setup_partition(context, setup)
    drawn = draw_faults(setup.faults, setup.seed, pid, server_round)
    before_training(drawn)
    train_data, _ = local_data(setup, pid, _data_path(context))
    device = client_device(setup)
    model = model_for(setup, device)
    load_global_model(model, msg.content["arrays"], device)
    t = setup.train
    batches = LocalBatches(train_data, t.batch_size, t.batch_sampling,
                           round_seed(setup.seed, pid, server_round, 0),
                           augmentation(setup.task), task_kind(setup).batch_loss(train_data, pid),
                           device=device)
    steps = num_local_steps(len(train_data), t.batch_size, t.local_steps, t.local_epochs)
    params = {k: v for k, v in setup.strategy.items() if k != "name"}
    algorithm = get_strategy(setup.strategy["name"]).build_client(params)
    update = algorithm.train(LocalRound(
        model=model, batches=batches, steps=steps, train=t, params=params, content=msg.content,
        state=context.state, server_round=server_round, partition_id=pid,
        noise_seed=round_seed(setup.seed, pid, server_round, 1)))
    metrics = {k: float(v) for k, v in update.metrics.items()}
    metrics["num-examples"] = len(train_data)
    arrays = corrupt(update.arrays, str(drawn["corrupt"])) if drawn["corrupt"] else update.arrays
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics),
                          **update.extra})
    return Message(poison(content, list(drawn["attack"])), reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """The task's evaluation of the global model on this client's local test split (loss and
    accuracy for classification)."""
    setup = parse_setup(str(msg.content["config"][SETUP_KEY]))
    pid = _setup_partition(context, setup)
    _, test_data = local_data(setup, pid, _data_path(context))
    device = client_device(setup)
    model = model_for(setup, device)
    load_global_model(model, msg.content["arrays"], device)
    scores = task_kind(setup).evaluate(model, test_data, pid)
    metrics = MetricRecord({**{f"eval-{k}": float(v) for k, v in scores.items()},
                            "num-examples": len(test_data)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
