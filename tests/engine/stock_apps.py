"""Small stock Flower apps for the engine tests: FedAvg + logistic regression on digits.

Nothing here knows fedsim: the ServerApp runs ``flwr.serverapp.strategy.FedAvg.start`` and the
ClientApp is a plain ``@app.train``. Behaviour switches come through the run config:
``fail-partition`` raises in that partition's ClientApp, ``crash-partition`` kills the process
running it in round 1 (a dead actor), ``sleep-partition`` makes it slow.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from sklearn.datasets import load_digits

torch.set_num_threads(1)

client_app = ClientApp()
server_app = ServerApp()
RESULT: dict = {}


def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    return (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)


def new_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(64, 10)


def _flag(context: Context, key: str) -> int:
    return int(context.run_config.get(key, -1))


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    pid = int(context.node_config["partition-id"])
    n = int(context.node_config["num-partitions"])
    rnd = int(msg.content["config"]["server-round"])
    if pid == _flag(context, "fail-partition"):
        raise ValueError(f"partition {pid} always fails")
    if pid == _flag(context, "crash-partition") and rnd == int(
            context.run_config.get("crash-round", 1)):
        os._exit(1)
    if pid == _flag(context, "sleep-partition"):
        time.sleep(float(context.run_config.get("sleep-s", 1.0)))
    x, y = digits()
    x, y = x[300:][pid::n], y[300:][pid::n]
    model = new_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(pid * 1000 + rnd)
    for _ in range(5):
        idx = torch.randint(0, len(y), (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)[idx]),
                                          torch.from_numpy(y)[idx]).backward()
        opt.step()
    calls = int(context.state["stats"]["calls"]) + 1 if "stats" in context.state else 1
    context.state["stats"] = MetricRecord({"calls": calls})
    metrics = MetricRecord({"num-examples": len(y), "calls": calls, "pid": pid})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}),
                   reply_to=msg)


def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    x, y = digits()
    model = new_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    with torch.no_grad():
        logits = model(torch.from_numpy(x[:300]))
        loss = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[:300])))
    acc = float((logits.argmax(1).numpy() == y[:300]).mean())
    RESULT.setdefault("central", []).append((server_round, loss, acc))
    return MetricRecord({"loss": loss, "accuracy": acc})


class RecordingFedAvg(FedAvg):
    """FedAvg that records every round's replies (errors included) before aggregating."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        RESULT.setdefault("replies", []).append(
            [(r.metadata.src_node_id, r.has_error(),
              None if r.has_error() else dict(r.content["metrics"])) for r in replies])
        return super().aggregate_train(server_round, replies)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    rounds = int(context.run_config.get("rounds", 3))
    strategy = RecordingFedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                               min_available_nodes=len(list(grid.get_node_ids())))
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(new_model().state_dict()),
                            num_rounds=rounds, train_config=ConfigRecord({"lr": 0.1}),
                            evaluate_fn=central_eval)
    RESULT["arrays"] = {k: v.numpy() for k, v in result.arrays.items()}
