"""Measured uplink wire bytes per client per round of every strategy, against its limit.

For a model of about 1.06 million parameters (an MLP 1024 -> 1024 -> 10), each strategy's real
client half runs E local steps on synthetic data from the downlink its real server half builds,
and the reply is serialized exactly as it would cross the Grid (``fedsim.comm.meter``:
sum of the deflated Flower objects). The limit is what the algorithm must send:

    d bits              sign methods (SignSGD, stochastic sign, z-SignFedAvg, EF-SignSGD)
    (32 + k) d bits     FedLion, k = ceil(log2(2E+1)) (+16 instead of +32 with a bf16 momentum)
    32 d bits           FedAvg, FedAdam;  64 d FedDA;  96 d FAFED

Run:  PYTHONPATH=. python benchmarks/uplink.py [--steps E] [--hidden H]
Prints one row per strategy: payload bytes, wire bytes, the limit, and wire / limit
(the goal is at most 1.02).
"""

from __future__ import annotations

import argparse
import logging
import math
import time

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from clients.setup import SETUP_KEY, ClientSetup
from fedsim.comm.int_codec import bits_for_bound
from fedsim.comm.meter import message_payload_bytes, message_wire_bytes
from fedsim.config.schema import ExperimentConfig, TrainConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.training import LocalBatches
from strategies.client_half import LocalRound
from strategies.registry import Sampling, get_strategy

# (label, registered name, strategy params, limit in bits per parameter as f(k))
CASES = [
    ("fedavg", "fedavg", {}, lambda k: 32),
    ("fedadam", "fedadam", {}, lambda k: 32),
    ("fedlion", "fedlion", {}, lambda k: 32 + k),
    ("fedlion (bf16 momentum)", "fedlion", {"momentum_dtype": "bf16"}, lambda k: 16 + k),
    ("zsignfedavg", "zsignfedavg", {"sigma": 0.01}, lambda k: 1),
    ("signsgd", "signsgd", {}, lambda k: 1),
    ("sto_signsgd", "sto_signsgd", {}, lambda k: 1),
    ("ef_signsgd", "ef_signsgd", {}, lambda k: 1),
    ("fedda", "fedda", {}, lambda k: 64),
    ("fafed", "fafed", {}, lambda k: 96),
]

NODE_ID = 2


def build_model(hidden: int, features: int = 1024, classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(),
                         nn.Linear(hidden, classes))


class OneNodeGrid:
    def get_node_ids(self) -> list[int]:
        return [NODE_ID]


def measure(name: str, params: dict, hidden: int, steps: int, data: ArrayDataset) -> tuple[
        int, int, int, int]:
    """(d, payload bytes, wire bytes, downlink wire bytes) of one client's reply."""
    spec = get_strategy(name)
    server = spec.build_server(spec.params_cls(**params), Sampling(1, 1, 0))
    model = build_model(hidden)
    arrays = ArrayRecord(model.state_dict())
    cfg = ExperimentConfig()
    cfg.train.lr, cfg.train.local_steps = 0.01, steps
    cfg.strategy = {"name": name, **params}
    config = ConfigRecord({SETUP_KEY: ClientSetup.from_experiment(cfg).to_json()})
    instruction = list(server.configure_train(1, arrays, config, OneNodeGrid()))[0]
    down = message_wire_bytes(instruction)
    client = spec.build_client(dict(params))
    update = client.train(LocalRound(
        model=model, batches=LocalBatches(data, 16, "shuffle", 0), steps=steps,
        train=TrainConfig(lr=0.01, local_steps=steps, batch_size=16), params=params,
        content=instruction.content, state=RecordDict(), server_round=1, partition_id=0,
        noise_seed=12345))
    metrics = {k: float(v) for k, v in update.metrics.items()}
    metrics["num-examples"] = len(data)
    reply = Message(RecordDict({"arrays": update.arrays, "metrics": MetricRecord(metrics),
                                **update.extra}), reply_to=instruction)
    d = sum(int(np.prod(a.shape)) for a in arrays.values())
    return d, message_payload_bytes(reply), message_wire_bytes(reply), down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="local steps E")
    parser.add_argument("--hidden", type=int, default=1024, help="hidden width of the MLP")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(256, 1, 32, 32)).astype(np.float32),
                        rng.integers(0, 10, size=256).astype(np.int64))
    k = bits_for_bound(args.steps)
    print(f"model: MLP 1024-{args.hidden}-10; E = {args.steps} local steps; "
          f"FedLion k = ceil(log2(2E+1)) = {k} bits")
    header = (f"{'strategy':<26}{'d':>10}{'limit b/p':>10}{'limit B':>12}{'payload B':>12}"
              f"{'wire B':>12}{'wire/limit':>11}{'payload/limit':>14}{'downlink B':>12}"
              f"{'s':>6}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for label, name, params, limit_bits in CASES:
        t0 = time.perf_counter()
        d, payload, wire, down = measure(name, params, args.hidden, args.steps, data)
        limit = math.ceil(limit_bits(k) * d / 8)
        worst = max(worst, wire / limit)
        print(f"{label:<26}{d:>10,}{limit_bits(k):>10}{limit:>12,}{payload:>12,}{wire:>12,}"
              f"{wire / limit:>11.4f}{payload / limit:>14.4f}{down:>12,}"
              f"{time.perf_counter() - t0:>6.1f}")
    print(f"worst wire/limit: {worst:.4f} (goal <= 1.02)")


if __name__ == "__main__":
    main()
