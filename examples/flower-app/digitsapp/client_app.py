"""digitsapp: the Flower ClientApp (train and evaluate on this node's partition)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from digitsapp.task import Net, load_data
from digitsapp.task import test as test_fn
from digitsapp.task import train as train_fn

torch.set_num_threads(1)

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on local data."""
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    trainloader, _ = load_data(partition_id, num_partitions)
    server_round = int(msg.content["config"]["server-round"])
    # the batch order depends on the run's seed, the partition and the round only
    seed = int(context.run_config["seed"]) * 1_000_003 + partition_id * 1_000 + server_round
    train_loss = train_fn(model, trainloader, int(context.run_config["local-epochs"]),
                          float(msg.content["config"]["lr"]), seed)
    metrics = MetricRecord({"train_loss": train_loss,
                            "num-examples": len(trainloader.dataset)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on local validation data."""
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    _, valloader = load_data(partition_id, num_partitions)
    eval_loss, eval_acc = test_fn(model, valloader)
    metrics = MetricRecord({"eval_loss": eval_loss, "eval_acc": eval_acc,
                            "num-examples": len(valloader.dataset)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
