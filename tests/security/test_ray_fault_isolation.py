"""Finding 9: on the Ray engine a failing client loses only its own reply.

A client that raises gets an error reply of its own; a client that kills the actor process it
runs in loses its reply only: the other clients of that actor's batch run again on the
replacement, whose start-up does not count against the phase's time limit. Faults are drawn
per (seed, partition, round) (``clients.faults``), so the failed replies are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.faults import draw_faults
from fedsim.cli import main
from fedsim.config.schema import FaultConfig
from fedsim.results.writer import read_metrics

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.toml")
SEED, CLIENTS, ROUNDS = 2, 10, 2
FAULTS = FaultConfig(client_exception_rate=0.15, actor_kill_rate=0.1)


def _expected() -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(killers, raisers) as (round, partition): a kill happens before a raise."""
    drawn = {(r, p): draw_faults(FAULTS, SEED, p, r)
             for r in range(1, ROUNDS + 1) for p in range(CLIENTS)}
    killers = {k for k, d in drawn.items() if d["kill"]}
    raisers = {k for k, d in drawn.items() if d["raise"] and not d["kill"]}
    return killers, raisers


def test_the_chosen_seed_kills_one_actor_mid_batch() -> None:
    killers, raisers = _expected()
    assert killers == {(1, 6)}  # clients 0-5 ran before it and 7-9 after, on the same actor
    assert raisers == {(1, 1), (1, 8), (2, 2)}


@pytest.mark.slow
def test_only_the_failing_clients_lose_their_replies(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["run", QUICKSTART, "--out", str(out), "--engine", "ray"]
    for item in (f"seed={SEED}", f"task.num_clients={CLIENTS}",
                 f"train.clients_per_round={CLIENTS}", f"train.rounds={ROUNDS}",
                 "train.local_epochs=1", "eval.federated_every=0", "output.plots=false",
                 "engine.num_cpus=1",  # one actor holds all ten clients
                 "engine.phase_timeout_s=30",  # the replacement's start-up must not count
                 f"faults.client_exception_rate={FAULTS.client_exception_rate}",
                 f"faults.actor_kill_rate={FAULTS.actor_kill_rate}"):
        argv += ["--set", item]
    assert main(argv) == 0
    problems = [json.loads(line) for line in (out / "client_problems.jsonl").open()]
    failed = {(p["round"], p["partition"]) for p in problems}
    killers, raisers = _expected()
    assert failed == killers | raisers
    assert len(problems) == len(killers | raisers)
    reasons = {(p["round"], p["partition"]): p["reason"] for p in problems}
    assert all("actor running this client died" in reasons[k] for k in killers)
    assert all("InjectedFault" in reasons[k] for k in raisers)
    rows = read_metrics(out)[1:]
    for row in rows:
        lost = sum(1 for r, _ in killers | raisers if r == row["round"])
        assert row["train_replies"] == CLIENTS - lost
        assert row["train_failures"] == lost
    actors = json.loads((out / "actors.json").read_text())
    assert len(actors) == 1
