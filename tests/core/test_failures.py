"""A failing client becomes a counted error reply; the round goes on with the others, and the
results folder says which client failed and why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fedsim.results.writer import PROBLEMS_FILE, read_metrics
from strategies import local_sgd

from helpers import run_cli


def test_client_exception_is_counted_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    real_train = local_sgd.LocalSGD.train

    def flaky(self, local):
        if local.partition_id in (2, 5):
            raise RuntimeError("simulated device failure")
        return real_train(self, local)

    monkeypatch.setattr(local_sgd.LocalSGD, "train", flaky)
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        code, run_dir = run_cli(tmp_path / "r", "train.rounds=3")
    assert code == 0
    rows = read_metrics(run_dir)[1:]
    assert [r["train_failures"] for r in rows] == [2, 2, 2]
    assert [r["train_replies"] for r in rows] == [8, 8, 8]
    assert rows[-1]["central_accuracy"] > 0.6
    problems = [json.loads(line) for line in (run_dir / PROBLEMS_FILE).read_text().splitlines()]
    assert [(p["round"], p["partition"], p["kind"], p["phase"]) for p in problems] == \
        [(r, pid, "failed", "train") for r in (1, 2, 3) for pid in (2, 5)]
    assert all("simulated device failure" in p["reason"] for p in problems)
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 3 and "partition 2" in warnings[0] and "1 more" in warnings[0]


@pytest.mark.parametrize(("node_config", "match"), [
    ({"partition-id": 3, "num-partitions": 30}, "num-partitions 30 .* task.num_clients = 10"),
    ({"partition-id": 12, "num-partitions": 10}, "partition-id 12 .*partitions 0..9"),
])
def test_a_node_from_another_experiment_fails_with_the_fix(node_config: dict,
                                                           match: str) -> None:
    """A SuperNode started with --partition-id/--num-partitions that do not fit the
    experiment's task.num_clients fails with what to change, not an IndexError."""
    from flwr.app import ConfigRecord, Context, Message, RecordDict

    from clients.client_app import app
    from clients.setup import SETUP_KEY, ClientSetup
    from fedsim.config import load_config
    from fedsim.engine.base import assign_message_id, set_server_identity
    from fedsim.tasks.kind import task_kind

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "quickstart.toml")
    assert cfg.task.num_clients == 10
    set_server_identity(7)
    content = RecordDict({"arrays": task_kind(cfg).initial_arrays(), "config": ConfigRecord(
        {SETUP_KEY: ClientSetup.from_experiment(cfg).to_json(), "server-round": 1})})
    msg = Message(content, dst_node_id=5, message_type="train")
    assign_message_id(msg)
    context = Context(run_id=7, node_id=5, node_config=node_config, state=RecordDict(),
                      run_config={})
    with pytest.raises(ValueError, match=match):
        app(msg, context)


def test_a_resume_drops_the_problems_of_rounds_it_will_run_again(tmp_path: Path) -> None:
    from fedsim.checkpoint import drop_rounds_after

    path = tmp_path / PROBLEMS_FILE
    path.write_text("".join(json.dumps({"round": r, "partition": p}) + "\n"
                            for r in (1, 2, 3, 4) for p in (0, 1)))
    drop_rounds_after(path, 2)
    assert [json.loads(line)["round"] for line in path.read_text().splitlines()] == [1, 1, 2, 2]
    drop_rounds_after(tmp_path / "absent.jsonl", 1)  # nothing to do
