"""GPU benchmark of vectorized clients: one round of K clients' local training on a CUDA
device, each client on its own (``ClientAlgorithm.train``, K small forward/backward loops)
against all of them as one batched computation (``ClientAlgorithm.train_many``, vmap).

    python benchmarks/gpu_vectorized.py [--clients 100 1000] [--strategy fedavg] [--rounds 3]

Workload: the digits CNN (``digits-cnn``, 38,282 parameters), each client 64 digits drawn
with replacement from scikit-learn's bundled digits (seeded per client), 5 local steps of
batch 16, lr 0.05; the client halves of fedsim's strategies (``--strategy``: fedavg, fedlion,
zsignfedavg, fafed, ...). Per configuration it prints the median seconds a round of the
``--rounds`` timed rounds (after one untimed warm-up round), the speed-up and the largest
relative difference between the two paths' uplink arrays. The goal (issue 21) is a
speed-up of at least 10x. Needs CUDA; without it the script says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flwr.app import RecordDict  # noqa: E402

from fedsim.config.schema import TrainConfig  # noqa: E402
from fedsim.tasks.arrays import ArrayDataset  # noqa: E402
from fedsim.tasks.datasets import _digits  # noqa: E402
from fedsim.tasks.models import digits_cnn  # noqa: E402
from fedsim.tasks.training import LocalBatches  # noqa: E402
from strategies.client_half import ClientUpdate, LocalRound  # noqa: E402
from strategies.registry import get_strategy  # noqa: E402

GOAL = 10.0
STEPS, BATCH, LR, EXAMPLES = 5, 16, 0.05, 64


def client_data(k: int) -> list[ArrayDataset]:
    pool = _digits()
    out = []
    for i in range(k):
        idx = np.random.default_rng(i).integers(0, len(pool), EXAMPLES)
        out.append(ArrayDataset(pool.x[idx], pool.y[idx]))
    return out


def rounds_for(model: torch.nn.Module, data: list[ArrayDataset], device: torch.device,
               round_no: int) -> list[LocalRound]:
    train = TrainConfig(lr=LR, local_steps=STEPS, batch_size=BATCH)
    return [LocalRound(model=model, batches=LocalBatches(d, BATCH, "replacement",
                                                         1000 * round_no + i, device=device),
                       steps=STEPS, train=train, params={}, content=RecordDict(),
                       state=RecordDict(), server_round=round_no, partition_id=i,
                       noise_seed=7919 * round_no + i)
            for i, d in enumerate(data)]


def timed_round(strategy: str, model: torch.nn.Module, start: dict, data: list[ArrayDataset],
                device: torch.device, vectorized: bool, round_no: int,
                budget_bytes: float) -> tuple[float, list[ClientUpdate]]:
    client = get_strategy(strategy).build_client({})
    sync(device)
    t0 = time.perf_counter()
    model.load_state_dict(start)
    rounds = rounds_for(model, data, device, round_no)
    if vectorized:
        updates = client.train_many(rounds, budget_bytes)
        if isinstance(updates, str):
            raise SystemExit(f"{strategy}: the clients cannot run vectorized: {updates}")
    else:
        updates = []
        for local in rounds:
            model.load_state_dict(start)
            updates.append(client.train(local))
    sync(device)
    return time.perf_counter() - t0, updates


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def max_relative_difference(a: list[ClientUpdate], b: list[ClientUpdate]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for key in y.arrays:
            u, v = x.arrays[key].numpy(), y.arrays[key].numpy()
            if v.dtype == np.uint8:  # packed signs or integers: count differing bytes
                worst = max(worst, float(np.mean(u != v)))
            else:
                worst = max(worst, float(np.abs(u - v).max() / max(np.abs(v).max(), 1e-30)))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--strategy", default="fedavg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-mb", type=float, default=8192.0,
                        help="memory bound of one batched computation (engine.vectorize_memory_mb)")
    parser.add_argument("--device", default="cuda",
                        help="cuda (the benchmark); cpu only to smoke-test this script")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_vectorized.py needs a CUDA device and this machine has none (torch sees no "
              "GPU); run it on a GPU machine.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; strategy {args.strategy}; "
          f"digits-cnn, {STEPS} steps of batch {BATCH}, {args.rounds} timed rounds")
    torch.manual_seed(0)
    model = digits_cnn().to(device)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    budget = args.memory_mb * 2**20
    print(f"{'clients':>8}{'per-client s':>14}{'vectorized s':>14}{'speed-up':>10}"
          f"{'max rel diff':>14}  goal >= {GOAL:g}x")
    met_all = True
    for k in args.clients:
        data = client_data(k)
        times = {}
        updates = {}
        for vectorized in (False, True):
            timed_round(args.strategy, model, start, data, device, vectorized, 0, budget)
            seconds = []
            for r in range(1, args.rounds + 1):
                s, updates[vectorized] = timed_round(args.strategy, model, start, data,
                                                     device, vectorized, r, budget)
                seconds.append(s)
            times[vectorized] = statistics.median(seconds)
        speedup = times[False] / times[True]
        met = speedup >= GOAL
        met_all &= met
        diff = max_relative_difference(updates[True], updates[False])
        print(f"{k:>8}{times[False]:>14.3f}{times[True]:>14.3f}{speedup:>9.1f}x"
              f"{diff:>14.2e}  {'met' if met else 'NOT met'}", flush=True)
    return 0 if met_all else 1


if __name__ == "__main__":
    sys.exit(main())
