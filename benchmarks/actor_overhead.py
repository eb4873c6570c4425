"""What the fedsim actor adds around each client's training, measured without the noise of SGD.

    python benchmarks/actor_overhead.py [--clients 50] [--rounds 40]

Runs ``ClientActor.handle`` in this process (no Ray) on batches of the engine benchmark's
workload (digits, digits-cnn, 5 steps of batch 16), twice: with the real SGD steps, and with
the SGD steps replaced by a no-op, which leaves exactly the per-client cost of the engine and
the ClientApp (decoding the global model, seeds and batches, the Flower messages, encoding
and measuring the reply, and with ``--fold`` folding it). Each figure is the mean of the
fastest quarter of the batches; this machine's speed drifts too much for means of all.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_client_ms(clients: int, rounds: int, fold: bool, sgd: bool) -> float:
    import torch
    from flwr.app import ConfigRecord, Message, RecordDict

    import strategies.local_sgd as local_sgd
    from clients.setup import SETUP_KEY, ClientSetup
    from fedsim.config import config_from_dict
    from fedsim.engine.actor import ClientActor
    from fedsim.engine.base import assign_message_id, node_context, set_server_identity
    from fedsim.engine.fold import ReplyFold
    from fedsim.tasks.task import initial_arrays
    from fedsim.tasks.training import sgd_steps
    from strategies.reply_checks import model_reply_reject_reason
    from strategies.vector import Layout

    torch.set_num_threads(1)
    local_sgd.sgd_steps = sgd_steps if sgd else (lambda *args, **kwargs: 0.0)
    cfg = config_from_dict({
        "task": {"dataset": "digits", "model": "digits-cnn", "num_clients": 100,
                 "partitioner": "iid", "local_test_fraction": 0.0},
        "train": {"clients_per_round": 100, "local_steps": 5, "batch_size": 16,
                  "batch_sampling": "replacement", "lr": 0.05}})
    setup = ClientSetup.from_experiment(cfg).to_json()
    arrays = initial_arrays(cfg.task, cfg.seed)
    actor = ClientActor("clients.client_app:app", "cpu", "cpu")
    nodes = list(range(1000, 1000 + clients))
    actor.register([node_context(1, n, i, 100, {}) for i, n in enumerate(nodes)])
    set_server_identity(1)
    reply_fold = ReplyFold("num-examples", functools.partial(
        model_reply_reject_reason, layout=Layout.of(arrays))) if fold else None
    seconds = []
    for rnd in range(1, rounds + 1):
        content = RecordDict({"arrays": arrays, "config": ConfigRecord(
            {SETUP_KEY: setup, "server-round": rnd})})
        shared = {id(record): record for record in content.values()}
        items = []
        for node in nodes:
            msg = Message(content, dst_node_id=node, message_type="train")
            assign_message_id(msg)
            items.append((msg.metadata, {name: id(rec) for name, rec in content.items()}))
        start = time.perf_counter()
        actor.handle(shared, items, reply_fold)
        seconds.append(time.perf_counter() - start)
    fastest = sorted(seconds[2:])[:max(1, (rounds - 2) // 4)]
    return sum(fastest) / len(fastest) / clients * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    os.chdir(REPO)
    print(f"{'per client call, ms':<36}{'one reply per client':>22}{'folded':>10}")
    for label, sgd in (("with the 5 SGD steps", True),
                       ("without them (engine + ClientApp)", False)):
        plain = per_client_ms(args.clients, args.rounds, fold=False, sgd=sgd)
        folded = per_client_ms(args.clients, args.rounds, fold=True, sgd=sgd)
        print(f"{label:<36}{plain:>22.3f}{folded:>10.3f}")


if __name__ == "__main__":
    main()
