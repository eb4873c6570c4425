"""The fedsim ClientApp (Flower Message API): one app for every strategy, task and engine.

``train`` loads the global model, runs the strategy's client half and replies with its
(encoded) update; ``evaluate`` scores the global model on the client's local test split;
``query`` tells the server which partition this node holds (for deterministic sampling).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from clients.faults import before_training, corrupt, draw_faults, poison
from clients.noise_source import client_noise_seed
from clients.runtime import client_device, load_global_model, local_data, model_for, round_seed
from clients.setup import SETUP_KEY, ClientSetup, check_node_settings, parse_setup
from fedsim.tasks.device import module_device
from fedsim.tasks.kind import task_kind
from fedsim.tasks.task import augmentation
from fedsim.tasks.training import LocalBatches, num_local_steps
from strategies.client_half import ClientAlgorithm, ClientUpdate, LocalRound
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


@dataclass
class _Prepared:
    """One train instruction made ready for the client half (nothing run yet)."""

    setup: ClientSetup
    pid: int
    drawn: dict
    examples: int
    algorithm: ClientAlgorithm
    local: LocalRound


def _prepare(msg: Message, context: Context) -> _Prepared:
    """Parse the instruction and build this client's round: its data, batches, model (which
    holds the global model once :func:`_load_global` ran) and client half."""
    config = msg.content["config"]
    setup = parse_setup(str(config[SETUP_KEY]))
    check_node_settings(setup, context.node_config)
    server_round = int(config["server-round"])
    pid = _setup_partition(context, setup)
    drawn = draw_faults(setup.faults, setup.seed, pid, server_round)
    train_data, _ = local_data(setup, pid, _data_path(context))
    device = client_device(setup)
    model = model_for(setup, device)
    t = setup.train
    batches = LocalBatches(train_data, t.batch_size, t.batch_sampling,
                           round_seed(setup.seed, pid, server_round, 0),
                           augmentation(setup.task), task_kind(setup).batch_loss(train_data, pid),
                           device=device)
    steps = num_local_steps(len(train_data), t.batch_size, t.local_steps, t.local_epochs)
    params = {k: v for k, v in setup.strategy.items() if k != "name"}
    algorithm = get_strategy(setup.strategy["name"]).build_client(params)
    local = LocalRound(
        model=model, batches=batches, steps=steps, train=t, params=params, content=msg.content,
        state=context.state, server_round=server_round, partition_id=pid,
        noise_seed=client_noise_seed(context, setup.seed, pid, server_round))
    return _Prepared(setup, pid, drawn, len(train_data), algorithm, local)


def _load_global(ready: _Prepared) -> None:
    load_global_model(ready.local.model, ready.local.content["arrays"],
                      module_device(ready.local.model))


def _reply(msg: Message, ready: _Prepared, update: ClientUpdate) -> Message:
    metrics = {k: float(v) for k, v in update.metrics.items()}
    metrics["num-examples"] = ready.examples
    drawn = ready.drawn
    arrays = corrupt(update.arrays, str(drawn["corrupt"])) if drawn["corrupt"] else update.arrays
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics),
                          **update.extra})
    return Message(poison(content, list(drawn["attack"])), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training with the strategy's client half."""
    ready = _prepare(msg, context)
    before_training(ready.drawn)
    _load_global(ready)
    return _reply(msg, ready, ready.algorithm.train(ready.local))


def train_batch(messages: list[Message], contexts: list[Context],
                budget_bytes: float) -> tuple[list[Message | None], list[str]]:
    """Vectorized clients: the train instructions of an actor's batch that share a setup, a
    global model, a step count and a client half that has a batched form
    (:meth:`ClientAlgorithm.train_many`) run as one computation. Returns a reply per message
    (None: run that one alone, as usual) and why any group could not be batched."""
    replies: list[Message | None] = [None] * len(messages)
    groups: dict[tuple, list[tuple[int, _Prepared]]] = {}
    notes: list[str] = []
    for i, (msg, context) in enumerate(zip(messages, contexts, strict=True)):
        try:
            ready = _prepare(msg, context)
        except Exception:  # noqa: BLE001 - it fails again, and is reported, when run alone
            continue
        key = (str(msg.content["config"][SETUP_KEY]), id(msg.content["arrays"]),
               ready.local.steps, ready.local.batches.batch_size)
        groups.setdefault(key, []).append((i, ready))
    for members in groups.values():
        if len(members) < 2:
            continue
        running = []
        for i, ready in members:
            try:
                before_training(ready.drawn)  # injected faults stay per client
            except Exception as exc:  # noqa: BLE001 - that client's error reply, as alone
                replies[i] = client_error(messages[i], exc)
                continue
            running.append((i, ready))
        if not running:
            continue
        first = running[0][1]
        _load_global(first)
        updates = first.algorithm.train_many([ready.local for _, ready in running],
                                             budget_bytes)
        if isinstance(updates, str):
            notes.append(f"{len(running)} clients of {first.setup.strategy['name']} run one "
                         f"by one: {updates}")
            for i, _ in running:  # their faults were drawn: run them alone without again
                replies[i] = _alone(messages[i], contexts[i])
            continue
        for (i, ready), update in zip(running, updates, strict=True):
            replies[i] = _reply(messages[i], ready, update)
    return replies, notes


def client_error(msg: Message, exc: BaseException) -> Message:
    """The error reply the engine makes of a ClientApp that raised ``exc`` (its traceback)."""
    trace = "".join(traceback.format_exception(exc, limit=4))
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                         reason=f"{type(exc).__name__}: {exc}\n{trace}"), reply_to=msg)


def _alone(msg: Message, context: Context) -> Message:
    """``train`` for a client whose injected faults already happened."""
    try:
        ready = _prepare(msg, context)
        _load_global(ready)
        return _reply(msg, ready, ready.algorithm.train(ready.local))
    except Exception as exc:  # noqa: BLE001 - the client's error reply
        return client_error(msg, exc)


app.fedsim_train_batch = train_batch


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    """The task's evaluation of the global model on this client's local test split (loss and
    accuracy for classification). A client whose split is empty (a small partition and a small
    ``task.local_test_fraction``) replies ``num-examples = 0`` and no scores: the server leaves
    it out of the mean and counts it (``evaluate_empty``)."""
    setup = parse_setup(str(msg.content["config"][SETUP_KEY]))
    pid = _setup_partition(context, setup)
    _, test_data = local_data(setup, pid, _data_path(context))
    if len(test_data) == 0 and task_kind(setup).evaluates_local_data:
        return Message(RecordDict({"metrics": MetricRecord({"num-examples": 0})}), reply_to=msg)
    device = client_device(setup)
    model = model_for(setup, device)
    load_global_model(model, msg.content["arrays"], device)
    scores = task_kind(setup).evaluate(model, test_data, pid)
    metrics = MetricRecord({**{f"eval-{k}": float(v) for k, v in scores.items()},
                            "num-examples": len(test_data)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
