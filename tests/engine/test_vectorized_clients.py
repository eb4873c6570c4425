"""Vectorized clients: an actor's clients trained as one batched computation give each client
the update, metrics and reply size it would get alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from torch import nn

from clients.client_app import train, train_batch
from clients.setup import SETUP_KEY, ClientSetup
from fedsim.config.schema import ExperimentConfig
from fedsim.engine.base import make_node_ids, node_context
from fedsim.engine.wire import message_bytes
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.models import digits_cnn
from fedsim.tasks.stacked_training import can_stack, chunk_size, stacked_sgd
from fedsim.tasks.training import LocalBatches, random_crop_flip, sgd_steps

TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
ROOT = Path(__file__).resolve().parents[2]


def _clients(k: int, n: int = 40, seed: int = 0) -> list[ArrayDataset]:
    rng = np.random.default_rng(seed)
    return [ArrayDataset(rng.random((n, 1, 8, 8)).astype(np.float32),
                         rng.integers(0, 10, n).astype(np.int64)) for _ in range(k)]


def _alone(model: nn.Module, start: dict, data: list[ArrayDataset], steps: int,
           **sgd: float) -> list[dict[str, torch.Tensor]]:
    out = []
    for i, d in enumerate(data):
        model.load_state_dict(start)
        sgd_steps(model, LocalBatches(d, 8, "shuffle", 100 + i), steps, 0.05, **sgd)
        out.append({k: v.clone() for k, v in model.state_dict().items()})
    return out


def _max_relative_error(a: list[dict], b: list[dict]) -> float:
    return max(float((x[k] - y[k]).abs().max() / y[k].abs().max())
               for x, y in zip(a, b, strict=True) for k in y)


@pytest.mark.parametrize("sgd", [{}, {"momentum": 0.9, "weight_decay": 1e-3}])
def test_stacked_sgd_equals_each_client_alone(sgd: dict) -> None:
    torch.manual_seed(0)
    model = digits_cnn()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = _clients(5)
    alone = _alone(model, start, data, 4, **sgd)
    model.load_state_dict(start)
    batches = [LocalBatches(d, 8, "shuffle", 100 + i) for i, d in enumerate(data)]
    stacked, losses = stacked_sgd(model, batches, 4, 0.05, sgd.get("momentum", 0.0),
                                  sgd.get("weight_decay", 0.0))
    assert _max_relative_error(stacked, alone) < 1e-5
    assert _max_relative_error(stacked[:1], alone[1:2]) > 1e-3  # the clients really differ
    assert len(losses) == 5 and all(np.isfinite(losses))
    # the stacked computation leaves the shared model as it found it (the global model)
    assert all(torch.equal(model.state_dict()[k], start[k]) for k in start)


def test_the_proximal_term_is_stacked_too() -> None:
    """FedProx's mu (p - p0) term, against LocalProx run alone."""
    sys.path.insert(0, str(ROOT / "tests" / "strategies"))  # also when run on its own
    from strategy_fixtures import local_round

    from strategies.local_prox import LocalProx

    torch.manual_seed(1)
    model = digits_cnn()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = _clients(3, seed=1)
    content = RecordDict({"config": ConfigRecord({"proximal-mu": 0.5})})
    alone = []
    for d in data:
        model.load_state_dict(start)
        update = LocalProx().train(local_round(model, d, 3, 0.05, content=content))
        alone.append({k: torch.from_numpy(update.arrays[k].numpy()) for k in start})
    model.load_state_dict(start)
    rounds = [local_round(model, d, 3, 0.05, content=content) for d in data]
    updates = LocalProx().train_many(rounds, budget_bytes=float("inf"))
    stacked = [{k: torch.from_numpy(u.arrays[k].numpy()) for k in start} for u in updates]
    assert _max_relative_error(stacked, alone) < 1e-5


def test_a_small_memory_budget_runs_the_clients_in_chunks_with_the_same_result() -> None:
    torch.manual_seed(2)
    model = digits_cnn()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = _clients(5, seed=2)

    def run(budget: float) -> list[dict]:
        model.load_state_dict(start)
        batches = [LocalBatches(d, 8, "shuffle", i) for i, d in enumerate(data)]
        return stacked_sgd(model, batches, 2, 0.1, budget_bytes=budget)[0]

    one_at_a_time = chunk_size(model, torch.Size([8, 1, 8, 8]), 1.0)
    per_two = 2.5 * (5 * 38_282 * 4)  # room for two clients' copies, not three
    assert one_at_a_time == 1 and 1 <= chunk_size(model, torch.Size([8, 1, 8, 8]), per_two) <= 2
    assert _max_relative_error(run(1.0), run(float("inf"))) < 1e-5


def test_what_cannot_be_stacked_says_why() -> None:
    data = _clients(2)
    plain = [LocalBatches(d, 8, "shuffle", i) for i, d in enumerate(data)]
    assert can_stack(digits_cnn(), plain) is None
    assert "buffers" in can_stack(nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64)), plain)
    augmented = [LocalBatches(d, 8, "shuffle", i, augment=random_crop_flip)
                 for i, d in enumerate(data)]
    assert "augmentation" in can_stack(digits_cnn(), augmented)
    uneven = [LocalBatches(data[0], 8, "shuffle", 0), LocalBatches(data[1], 32, "shuffle", 1)]
    assert "batch sizes" in can_stack(digits_cnn(), [*uneven[:1], LocalBatches(
        ArrayDataset(data[1].x[:5], data[1].y[:5]), 8, "shuffle", 1)])
    assert "single" in can_stack(digits_cnn(), plain[:1])


def _instructions(strategy: str, k: int, **train: float) -> tuple[list[Message], list]:
    cfg = ExperimentConfig()
    cfg.task.model, cfg.task.num_clients = "digits-cnn", k
    cfg.strategy = {"name": strategy, **({"eta": 0.01} if strategy == "fedadam" else {})}
    cfg.train.local_steps, cfg.train.batch_size = 3, 8
    for key, value in train.items():
        setattr(cfg.train, key, value)
    setup = ClientSetup.from_experiment(cfg).to_json()
    torch.manual_seed(0)
    arrays = ArrayRecord(digits_cnn().state_dict())
    config = ConfigRecord({SETUP_KEY: setup, "server-round": 1})
    nodes = make_node_ids(k, 0)
    messages, contexts = [], []
    for i, node in enumerate(nodes):
        msg = Message(RecordDict({"arrays": arrays, "config": config}), dst_node_id=node,
                      message_type=MessageType.TRAIN)
        msg.metadata.__dict__["_message_id"] = f"m{i}"
        messages.append(msg)
        contexts.append(node_context(1, node, i, k, {}))
    return messages, contexts


@pytest.mark.parametrize("strategy", ["fedavg", "fedadam", "flwr:FedProx"])
def test_the_clientapp_batch_gives_each_client_its_own_reply(strategy: str) -> None:
    messages, contexts = _instructions(strategy, 4, momentum=0.5)
    batched, notes = train_batch(messages, contexts, float("inf"))
    assert notes == []
    alone = [train(m, c) for m, c in zip(messages, contexts, strict=True)]
    for b, a in zip(batched, alone, strict=True):
        assert message_bytes(b) == message_bytes(a)  # the meter sees the same bytes
        assert b.content["metrics"]["num-examples"] == a.content["metrics"]["num-examples"]
        assert abs(b.content["metrics"]["train-loss"] - a.content["metrics"]["train-loss"]) \
            < 1e-5
        for key in a.content["arrays"]:
            x, y = b.content["arrays"][key].numpy(), a.content["arrays"][key].numpy()
            assert np.abs(x - y).max() <= 1e-5 * np.abs(y).max()


def test_a_client_half_without_a_batched_form_runs_alone_with_a_note() -> None:
    messages, contexts = _instructions("zo-seeds", 3)
    config = ConfigRecord({**messages[0].content["config"], "zo-seed": 5})
    for msg in messages:  # the round's shared direction seed, as the server sends it
        msg.content["config"] = config
    batched, notes = train_batch(messages, contexts, float("inf"))
    assert len(notes) == 1 and "one by one" in notes[0] and "zo-seeds" in notes[0]
    alone = [train(m, c) for m, c in zip(messages, contexts, strict=True)]
    for b, a in zip(batched, alone, strict=True):  # the same client half, run alone
        for key in a.content["arrays"]:
            assert b.content["arrays"][key].numpy().tobytes() == \
                a.content["arrays"][key].numpy().tobytes()


def test_an_injected_client_exception_fails_only_that_client() -> None:
    messages, contexts = _instructions("fedavg", 6)
    setup = json.loads(str(messages[0].content["config"][SETUP_KEY]))
    setup["faults"] = {"client_exception_rate": 0.5}
    config = ConfigRecord({SETUP_KEY: json.dumps(setup, separators=(",", ":"), sort_keys=True),
                           "server-round": 1})
    for msg in messages:
        msg.content["config"] = config
    batched, _ = train_batch(messages, contexts, float("inf"))
    failed = [r.has_error() for r in batched]
    assert 0 < sum(failed) < 6
    for msg, context, reply in zip(messages, contexts, batched, strict=True):
        try:
            alone_failed = train(msg, context).has_error()
        except Exception:  # noqa: BLE001 - the engine turns this into the error reply
            alone_failed = True
        assert reply.has_error() == alone_failed


@pytest.mark.slow
def test_a_vectorized_ray_run_equals_the_per_client_run(tmp_path: Path) -> None:
    from fedsim.cli import main

    rows = {}
    for mode in ("on", "off"):
        out = tmp_path / mode
        assert main(["run", str(ROOT / "configs" / "fedavg.toml"), "--out", str(out),
                     "--set", "train.rounds=2", "--set", "task.num_clients=12",
                     "--set", "train.clients_per_round=8", "--set", "output.plots=false",
                     "--set", f"engine.vectorize={mode}"]) == 0
        rows[mode] = [json.loads(line) for line in (out / "metrics.jsonl").open()]
        actors = json.loads((out / "actors.json").read_text())
        calls = sum(a["vectorized_calls"] for a in actors)
        assert (calls > 0) == (mode == "on")
    for on, off in zip(rows["on"], rows["off"], strict=True):
        assert on.get("uplink_bytes_by_client") == off.get("uplink_bytes_by_client")
        assert on["central_loss"] == pytest.approx(off["central_loss"], rel=1e-4)
