"""Hostile replies injected into a running federation (issue 24, finding 3): every kind is
dropped and counted in client_problems.jsonl, none is aggregated, and the run finishes with
exit code 0 and no traceback.

One in-process digits run carries most kinds: partition 1 sends a hostile train reply in every
round (one kind a round), partition 2 a hostile evaluate reply, partitions 3-9 answer the
partition query badly; partition 0 is honest throughout. A zo-seeds run and a DNO run carry
the kinds of their own replies.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MessageType, MetricRecord
from hostile import (
    HUGE,
    HostileApp,
    added,
    fails,
    first,
    metrics_as_strings,
    query_reply,
    renamed,
    reply_to_other_message,
    set_flat,
    truncated_bytes,
    with_arrays,
    with_metrics,
    without,
)

import clients.client_app
from fedsim.cli import main
from fedsim.engine.base import make_node_ids
from fedsim.results.writer import PROBLEMS_FILE, read_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAINER, EVALUATOR = 1, 2  # the partitions that send hostile train / evaluate replies

TRAIN_KINDS = {
    "nan-array": with_arrays(first(set_flat(0, np.nan))),
    "inf-array": with_arrays(first(set_flat(-1, -np.inf))),
    "float64-array": with_arrays(first(lambda x: x.astype(np.float64))),
    "wrong-shape": with_arrays(first(lambda x: x.reshape(-1))),
    "truncated-bytes": with_arrays(first(truncated_bytes)),
    "missing-array": with_arrays(lambda a: dict(list(a.items())[1:])),
    "extra-array": with_arrays(lambda a: {**a, "backdoor": np.ones(3, np.float32)}),
    "second-array-record": added("more", ArrayRecord({"x": Array(np.zeros(2, np.float32))})),
    "no-array-record": without("arrays"),
    "metrics-record-renamed": renamed("metrics", "stats"),
    "no-metrics-record": without("metrics"),
    "second-metrics-record": added("more", MetricRecord({"num-examples": 5})),
    "metrics-as-strings": metrics_as_strings,
    "num-examples-1.7e308": with_metrics(**{"num-examples": HUGE}),
    "num-examples-1.8e308-inf": with_metrics(**{"num-examples": float("1.8e308")}),
    "num-examples-zero": with_metrics(**{"num-examples": 0}),
    "num-examples-negative": with_metrics(**{"num-examples": -50}),
    "num-examples-nan": with_metrics(**{"num-examples": math.nan}),
    "num-examples-fraction": with_metrics(**{"num-examples": 2.5}),
    "num-examples-missing": with_metrics(**{"num-examples": None}),
    "metric-as-list": with_metrics(**{"train-loss": [0.5, 0.25]}),
    "metric-nan": with_metrics(**{"train-loss": math.nan}),
    "extra-metric-key": with_metrics(central_accuracy=1.0),
    "odd-metric-name": with_metrics(**{'loss"}\n{"round': 1.0}),
    "client-error": fails,
    "reply-to-wrong-message": reply_to_other_message,
    "huge-finite-3e38": with_arrays(lambda a: {k: np.full_like(v, 3e38) for k, v in a.items()}),
}
# finite and well-formed: bounding them is the robust aggregation's job; here they must only
# not crash the run (last round, so that no later round trains from the poisoned model)
ACCEPTED: set[str] = set()  # 3e38 passes the schema; robust.max_update_norm drops it

EVAL_KINDS = {
    "eval-metric-as-list": with_metrics(**{"eval-loss": [1.0, 2.0]}),
    "eval-metrics-as-strings": metrics_as_strings,
    "eval-nan-loss": with_metrics(**{"eval-loss": math.nan}),
    "eval-inf-accuracy": with_metrics(**{"eval-accuracy": math.inf}),
    "eval-extra-key": with_metrics(round=99.0),
    "eval-missing-key": with_metrics(**{"eval-accuracy": None}),
    "eval-no-num-examples": with_metrics(**{"num-examples": None}),
    "eval-num-examples-1.7e308": with_metrics(**{"num-examples": HUGE}),
    "eval-negative-num-examples": with_metrics(**{"num-examples": -1}),
    "eval-record-renamed": renamed("metrics", "scores"),
    "eval-second-record": added("more", MetricRecord({"num-examples": 1})),
    "eval-odd-metric-name": with_metrics(**{"eval-acc uracy\n": 1.0}),
    "eval-error": fails,
    "eval-reply-to-wrong-message": reply_to_other_message,
}

QUERY_KINDS = {  # partition -> (kind, what the refusal says)
    3: (without("node"), "no ConfigRecord 'node'"),
    4: (query_reply("0"), "not an integer"),
    5: (query_reply(99), "outside 0..9"),
    6: (query_reply(-1), "outside 0..9"),
    7: (fails, "hostile client raises"),
    8: (query_reply(8), "also claimed by node"),  # 8 and 9 both claim partition 8
    9: (query_reply(8), "also claimed by node"),
}
NUM_CLIENTS = 10
ROUNDS = len(TRAIN_KINDS)
TRAIN_ROUND = {name: i + 1 for i, name in enumerate(TRAIN_KINDS)}
EVAL_ROUND = {name: i + 1 for i, name in enumerate(EVAL_KINDS)}


class Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_hostile(out: Path, config: str, plan: dict, *overrides: str) -> dict[str, Any]:
    """Run ``config`` in process with ``plan``'s hostile replies; its exit code, rows,
    problems and log."""
    logged = Logged()
    root = logging.getLogger()
    root.addHandler(logged)
    args = ["run", str(CONFIGS / config), "--out", str(out), "--engine", "inprocess"]
    for item in ("output.plots=false", *overrides):
        args += ["--set", item]
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(clients.client_app, "app", HostileApp(clients.client_app.app, plan))
            code = main(args)
    finally:
        root.removeHandler(logged)
    problems_path = out / PROBLEMS_FILE
    problems = [json.loads(line) for line in problems_path.read_text().splitlines()] \
        if problems_path.exists() else []
    return {"code": code, "rows": {r["round"]: r for r in read_metrics(out)},
            "problems": problems, "log": logged.records}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    plan: dict = {(MessageType.TRAIN, TRAINER, TRAIN_ROUND[k]): f for k, f in TRAIN_KINDS.items()}
    plan.update({(MessageType.EVALUATE, EVALUATOR, EVAL_ROUND[k]): f
                 for k, f in EVAL_KINDS.items()})
    plan.update({(MessageType.QUERY, p, None): kind for p, (kind, _) in QUERY_KINDS.items()})
    yield run_hostile(tmp_path_factory.mktemp("hostile") / "run", "quickstart.toml", plan,
                      f"task.num_clients={NUM_CLIENTS}", "task.partitioner=iid",
                      "train.clients_per_round=3", f"train.rounds={ROUNDS}",
                      "train.local_steps=5", "eval.federated_every=1")


def _problems(run: dict, phase: str, rnd: int, partition: int | None) -> list[dict]:
    return [p for p in run["problems"] if p["phase"] == phase and p["round"] == rnd
            and p["partition"] == partition]


def test_the_run_finishes_without_a_traceback(digits_run: dict) -> None:
    assert digits_run["code"] == 0
    assert sorted(digits_run["rows"]) == list(range(ROUNDS + 1))
    for record in digits_run["log"]:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()
    # the honest clients still learn, the last (3e38) round included: the guards drop it
    assert digits_run["rows"][ROUNDS]["central_accuracy"] > 0.8


def test_every_problem_is_one_hostile_reply(digits_run: dict) -> None:
    """Exactly the hostile replies are in client_problems.jsonl: no honest one, none twice."""
    expected = len(TRAIN_KINDS) - len(ACCEPTED) + len(EVAL_KINDS) + len(QUERY_KINDS)
    problems = digits_run["problems"]
    assert len(problems) == expected
    for problem in problems:
        assert problem["reason"], problem
        assert problem["kind"] in ("failed", "rejected")


@pytest.mark.parametrize("name", list(TRAIN_KINDS))
def test_hostile_train_reply_is_dropped_and_counted(digits_run: dict, name: str) -> None:
    rnd = TRAIN_ROUND[name]
    row = digits_run["rows"][rnd]
    if name in ACCEPTED:  # nothing crashed; bounding it is not the reply schema's job
        assert row["train_replies"] == 3
        return
    assert row["train_replies"] == 2, row  # the hostile reply is not aggregated
    assert row["train_rejected"] + row["train_failures"] == 1
    (problem,) = _problems(digits_run, "train", rnd, TRAINER)
    assert problem["node"] == make_node_ids(NUM_CLIENTS, 0)[TRAINER]
    assert math.isfinite(row["central_accuracy"])
    assert not any(k.startswith("train_central") or "\n" in k or '"' in k for k in row)


@pytest.mark.parametrize("name", list(EVAL_KINDS))
def test_hostile_evaluate_reply_is_dropped_and_counted(digits_run: dict, name: str) -> None:
    rnd = EVAL_ROUND[name]
    row = digits_run["rows"][rnd]
    assert row["evaluate_rejected"] + row["evaluate_failures"] == 1, row
    (problem,) = _problems(digits_run, "evaluate", rnd, EVALUATOR)
    assert problem["reason"]
    # the federated metrics are the two honest clients' mean, finite, and no column was added
    assert 0.0 <= row["federated_accuracy"] <= 1.0
    assert math.isfinite(row["federated_loss"])
    assert "federated_round" not in row and not any("\n" in k or " " in k for k in row)


@pytest.mark.parametrize("partition", sorted(QUERY_KINDS))
def test_hostile_partition_query_reply_refuses_the_node(digits_run: dict,
                                                        partition: int) -> None:
    node = make_node_ids(NUM_CLIENTS, 0)[partition]
    (problem,) = [p for p in digits_run["problems"] if p["phase"] == "query"
                  and p["node"] == node]
    assert problem["partition"] is None and problem["round"] == 0
    assert QUERY_KINDS[partition][1] in problem["reason"]
    # a refused node is never asked to train or evaluate
    assert not [p for p in digits_run["problems"] if p["partition"] == partition]


ZO_KINDS = {
    "zo-metrics-record-renamed": renamed("metrics", "zo"),
    "zo-losses-wrong-length": with_arrays(lambda a: {"losses": a["losses"][:-1]}),
    "zo-losses-nan": with_arrays(lambda a: {"losses": a["losses"] * np.nan}),
    "zo-num-examples-1.7e308": with_metrics(**{"num-examples": HUGE}),
}


@pytest.fixture(scope="module")
def zo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    plan = {(MessageType.TRAIN, TRAINER, i + 1): kind for i, kind in enumerate(ZO_KINDS.values())}
    yield run_hostile(tmp_path_factory.mktemp("hostile-zo") / "run", "zo-seeds.toml", plan,
                      "task.num_clients=3", "train.clients_per_round=3",
                      f"train.rounds={len(ZO_KINDS)}", "strategy.q=4")


@pytest.mark.parametrize("name", list(ZO_KINDS))
def test_hostile_zo_seeds_reply_is_dropped_and_counted(zo_run: dict, name: str) -> None:
    assert zo_run["code"] == 0
    rnd = list(ZO_KINDS).index(name) + 1
    row = zo_run["rows"][rnd]
    assert row["train_replies"] == 2 and row["train_rejected"] == 1, row
    (problem,) = _problems(zo_run, "train", rnd, TRAINER)
    assert problem["kind"] == "rejected"


DNO_TRAIN_KINDS = {  # z-SignFedAvg on the DNO noise z: packed sign bits
    "dno-truncated-bits": with_arrays(lambda a: {k: v[:-1] for k, v in a.items()}),
    "dno-bits-as-float32": with_arrays(lambda a: {k: v.astype(np.float32) for k, v in a.items()}),
}
DNO_EVAL_KINDS = {
    "dno-eval-reward-nan": with_metrics(**{"eval-reward": math.nan}),
    "dno-eval-extra-key": with_metrics(**{"eval-secret": 1.0}),
}


@pytest.fixture(scope="module")
def dno_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    plan: dict = {(MessageType.TRAIN, TRAINER, i + 1): kind
                  for i, kind in enumerate(DNO_TRAIN_KINDS.values())}
    plan.update({(MessageType.EVALUATE, EVALUATOR, i + 1): kind
                 for i, kind in enumerate(DNO_EVAL_KINDS.values())})
    yield run_hostile(tmp_path_factory.mktemp("hostile-dno") / "run", "dno-zsignfedavg.toml",
                      plan, "dno.pretrain_steps=30", "diffusion.hidden=32", "diffusion.depth=1",
                      "dno.num_samples=2", "dno.sample_steps=4", "task.num_clients=3",
                      "train.clients_per_round=3", "train.rounds=2", "train.local_steps=1",
                      "eval.federated_every=1", "output.checkpoint_every=0")


@pytest.mark.parametrize("name", list(DNO_TRAIN_KINDS))
def test_hostile_dno_train_reply_is_dropped_and_counted(dno_run: dict, name: str) -> None:
    assert dno_run["code"] == 0
    rnd = list(DNO_TRAIN_KINDS).index(name) + 1
    row = dno_run["rows"][rnd]
    assert row["train_replies"] == 2 and row["train_rejected"] == 1, row
    (problem,) = _problems(dno_run, "train", rnd, TRAINER)
    assert "bits" in problem["reason"]


@pytest.mark.parametrize("name", list(DNO_EVAL_KINDS))
def test_hostile_dno_evaluate_reply_is_dropped_and_counted(dno_run: dict, name: str) -> None:
    rnd = list(DNO_EVAL_KINDS).index(name) + 1
    row = dno_run["rows"][rnd]
    assert row["evaluate_rejected"] == 1, row
    assert math.isfinite(row["federated_reward"]) and "federated_secret" not in row
    (problem,) = _problems(dno_run, "evaluate", rnd, EVALUATOR)
    assert problem["kind"] == "rejected"
