"""digitsapp: the Flower ServerApp (FedAvg through ``Strategy.start``)."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from digitsapp.task import Net, load_centralized_dataset, new_model, test

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg for ``num-server-rounds`` rounds; save the final model to ``save-path``."""
    num_rounds = int(context.run_config["num-server-rounds"])
    fraction_train = float(context.run_config["fraction-train"])
    lr = float(context.run_config["lr"])
    seed = int(context.run_config["seed"])

    arrays = ArrayRecord(new_model(seed).state_dict())
    strategy = FedAvg(fraction_train=fraction_train)
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=num_rounds,
                            train_config=ConfigRecord({"lr": lr}),
                            evaluate_fn=global_evaluate)

    save_path = str(context.run_config["save-path"])
    if save_path:
        np.savez(save_path, **{k: v.numpy() for k, v in result.arrays.items()})


def global_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Evaluate the global model on the held-out digits."""
    model = Net()
    model.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = test(model, load_centralized_dataset())
    return MetricRecord({"accuracy": accuracy, "loss": loss})
