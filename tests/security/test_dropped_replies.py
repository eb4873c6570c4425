"""What the user is told when replies are dropped (issue 24, findings 3, 5 and 13): a round
without a usable reply is reported, a run no client contributed to exits non-zero, empty local
test splits are left out of the federated mean and counted, reply metric names cannot add or
overwrite columns, a node that did not answer is named by its node id, not as partition -1."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, Error, Message, MetricRecord, RecordDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "strategies"))
from strategy_fixtures import NodeGrid, setup_config, tiny_model  # noqa: E402

from fedsim.cli import main  # noqa: E402
from fedsim.engine.base import assign_message_id  # noqa: E402
from fedsim.federation import _add_columns, _metric_values  # noqa: E402
from fedsim.results.contributions import EXIT_NO_CONTRIBUTION  # noqa: E402
from fedsim.results.writer import PROBLEMS_FILE, metric_column, read_metrics  # noqa: E402
from strategies.fedavg import FedAvgStrategy  # noqa: E402

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")
SUPERLINK_NODE_ID = 1  # Flower's SuperLink writes the error reply of a node that is gone
NODES = [41, 42, 43]


def _run(out: Path, *overrides: str) -> int:
    args = ["run", CONFIG, "--out", str(out), "--engine", "inprocess"]
    for item in ("output.plots=false", "task.num_clients=3", "train.clients_per_round=3",
                 "train.rounds=2", "train.local_steps=3", *overrides):
        args += ["--set", item]
    return main(args)


def test_a_run_no_client_contributed_to_exits_non_zero_and_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        code = _run(tmp_path / "run", "faults.client_exception_rate=1.0")
    assert code == EXIT_NO_CONTRIBUTION
    err = capsys.readouterr().err
    assert "no client contributed to this run" in err and PROBLEMS_FILE in err
    for rnd in (1, 2):
        assert f"round {rnd}: no train reply was usable (3 sent: 3 failed" in caplog.text
    rows = read_metrics(tmp_path / "run")
    assert [r["train_replies"] for r in rows[1:]] == [0, 0]


def test_a_run_one_client_contributed_to_exits_zero(tmp_path: Path) -> None:
    """Failing clients alone do not fail the run: one reply aggregated is a result."""
    code = _run(tmp_path / "run", "faults.client_exception_rate=0.7")
    rows = read_metrics(tmp_path / "run")
    assert sum(r["train_replies"] for r in rows[1:]) > 0
    assert sum(r["train_failures"] for r in rows[1:]) > 0
    assert code == 0


def test_clients_without_local_test_rows_are_counted_and_the_run_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        code = _run(tmp_path / "run", "task.local_test_fraction=0.0", "eval.federated_every=1")
    assert code == 0
    rows = read_metrics(tmp_path / "run")[1:]
    assert [r["evaluate_empty"] for r in rows] == [3, 3]
    assert [r["evaluate_rejected"] + r["evaluate_failures"] for r in rows] == [0, 0]
    assert not any(k.startswith("federated_") for r in rows for k in r)
    assert "none of the 3 clients asked to evaluate has local test rows" in caplog.text


def _evaluate_reply(instruction: Message, examples: int, **metrics: float) -> Message:
    record = MetricRecord({**{f"eval-{k}": v for k, v in metrics.items()},
                           "num-examples": examples})
    return Message(RecordDict({"metrics": record}), reply_to=instruction)


def _evaluating_strategy() -> tuple[FedAvgStrategy, list[Message]]:
    strategy = FedAvgStrategy(fraction_evaluate=1.0, min_evaluate_nodes=3,
                              min_available_nodes=3)
    strategy.bind_nodes({n: i for i, n in enumerate(NODES)}, seed=0)
    arrays = ArrayRecord(tiny_model().state_dict())
    strategy.configure_train(1, arrays, setup_config(0.1, 2), NodeGrid(NODES))
    messages = list(strategy.configure_evaluate(1, arrays, setup_config(0.1, 2),
                                                NodeGrid(NODES)))
    for msg in messages:
        assign_message_id(msg)
    return strategy, sorted(messages, key=lambda m: m.metadata.dst_node_id)


def test_an_empty_test_split_is_left_out_of_the_weighted_mean() -> None:
    strategy, messages = _evaluating_strategy()
    replies = [_evaluate_reply(messages[0], 10, loss=1.0, accuracy=0.5),
               _evaluate_reply(messages[1], 30, loss=2.0, accuracy=1.0),
               Message(RecordDict({"metrics": MetricRecord({"num-examples": 0})}),
                       reply_to=messages[2])]
    metrics = strategy.aggregate_evaluate(1, replies)
    assert metrics["eval-loss"] == pytest.approx(1.75)
    assert metrics["eval-accuracy"] == pytest.approx(0.875)
    assert strategy.round_report["evaluate_empty"] == 1
    assert strategy.round_report["evaluate_replies"] == 2
    assert strategy.reply_problems == []


def test_a_node_that_did_not_answer_is_named_by_its_partition_and_node() -> None:
    """The SuperLink answers for a dead node from its own id; the problem names the node
    the instruction went to (and its partition), never partition -1."""
    strategy, messages = _evaluating_strategy()
    dead = Message(Error(code=3, reason="node unavailable"), reply_to=messages[1])
    dead.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
    replies = [_evaluate_reply(messages[0], 10, loss=1.0, accuracy=0.5), dead,
               _evaluate_reply(messages[2], 10, loss=1.0, accuracy=0.5)]
    strategy.aggregate_evaluate(1, replies)
    (problem,) = strategy.reply_problems
    assert (problem["node"], problem["partition"]) == (NODES[1], 1)
    assert problem["kind"] == "failed" and problem["reason"] == "node unavailable"


def test_an_unknown_node_is_reported_by_node_id_not_partition_minus_one() -> None:
    strategy, messages = _evaluating_strategy()
    stranger = _evaluate_reply(messages[0], 10, loss=math.nan, accuracy=0.5)
    stranger.metadata.__dict__["_src_node_id"] = 99
    strategy._sent = []  # the instruction is not one this strategy knows
    strategy.aggregate_evaluate(1, [stranger])
    (problem,) = strategy.reply_problems
    assert problem["node"] == 99 and problem["partition"] is None


@pytest.mark.parametrize(("name", "column"), [
    ("eval-accuracy", "federated_accuracy"),
    ("local-steps", "federated_local_steps"),
    ("zo.grad", "federated_zo_grad"),
    ("Accuracy", None),
    ('x"}\n{"round": 0', None),
    ("a" * 65, None),
    ("", None),
])
def test_reply_metric_names_become_plain_columns_or_none(name: str, column: str | None) -> None:
    assert metric_column("federated_", name.removeprefix("eval-")) == column


def test_reply_metrics_cannot_overwrite_fedsim_columns(caplog: pytest.LogCaptureFixture) -> None:
    record = {"round": 3, "train_failures": 0, "central_accuracy": 0.9}
    values = _metric_values(MetricRecord({"train-failures": 7.0, "num-examples": 5,
                                          "train-loss": 0.5, "odd name": 1.0}), "train_")
    assert values == {"train_failures": 7.0, "train_loss": 0.5}
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        _add_columns(record, values)
    assert record == {"round": 3, "train_failures": 0, "central_accuracy": 0.9,
                      "train_loss": 0.5}
    assert "'train_failures'" in caplog.text
    assert metric_column("", "round") is None and metric_column("", "wall_seconds") is None


def test_problem_lines_are_json_with_node_and_partition(tmp_path: Path) -> None:
    _run(tmp_path / "run", "faults.client_exception_rate=0.5")
    lines = (tmp_path / "run" / PROBLEMS_FILE).read_text().splitlines()
    assert lines
    for line in lines:
        problem = json.loads(line)
        assert set(problem) == {"round", "phase", "kind", "partition", "node", "reason"}
        assert problem["partition"] in (0, 1, 2) and problem["node"] > 1
    assert np.all([json.loads(x)["kind"] == "failed" for x in lines])
