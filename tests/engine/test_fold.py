"""Reply folding (``engine.fold_replies``): the weighted average of per-actor partial averages
is FedAvg's average, replies the strategy would reject travel on their own, and the meter
still sees every client's own reply."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message, Metadata, MetricRecord, RecordDict
from flwr.app.message import make_message
from flwr.common.constant import ErrorCode

from fedsim.comm.npy import record_from_numpy, view
from fedsim.config import config_from_dict
from fedsim.config.errors import ConfigError
from fedsim.engine.base import error_reply
from fedsim.engine.fold import FoldSum, ReplyFold
from fedsim.results.writer import read_metrics
from strategies.reply_checks import model_reply_reject_reason
from strategies.vector import Layout

from helpers import metrics_without_times, run_cli


def _instruction(node: int, arrays: dict[str, np.ndarray]) -> Message:
    return make_message(Metadata(
        run_id=1, message_id=f"ins-{node}", src_node_id=0, dst_node_id=node,
        reply_to_message_id="", group_id="1", created_at=time.time(), ttl=60.0,
        message_type="train"), RecordDict({"arrays": record_from_numpy(arrays)}))


def _reply(ins: Message, arrays: dict[str, np.ndarray], n: int, **metrics: float) -> Message:
    content = RecordDict({"arrays": record_from_numpy(arrays),
                          "metrics": MetricRecord({"num-examples": n, **metrics})})
    return Message(content, reply_to=ins)


def _fold(arrays: dict[str, np.ndarray]) -> FoldSum:
    layout = Layout.of(record_from_numpy(arrays))
    return FoldSum(ReplyFold("num-examples",
                             functools.partial(model_reply_reject_reason, layout=layout)))


def test_folded_reply_is_the_weighted_average_of_the_clean_replies() -> None:
    glob = {"w": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.float32)}
    clients = {1: ({"w": np.full((2, 2), 1.0, np.float32), "b": np.arange(3, dtype=np.float32)},
                   1, 0.5),
               2: ({"w": np.full((2, 2), 4.0, np.float32), "b": np.ones(3, np.float32)}, 3, 1.5)}
    fold = _fold(glob)
    for node, (arrays, n, loss) in clients.items():
        ins = _instruction(node, glob)
        assert fold.add(ins, _reply(ins, arrays, n, train_loss=loss))
    # a NaN model (the strategy's own check rejects it) and an error reply are not folded
    bad = _instruction(3, glob)
    assert not fold.add(bad, _reply(bad, {"w": np.full((2, 2), np.nan, np.float32),
                                          "b": np.zeros(3, np.float32)}, 5, train_loss=0.0))
    assert not fold.add(bad, error_reply(bad, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, "boom"))
    reply = fold.reply()
    assert reply is not None and fold.count == 2
    assert reply.metadata.reply_to_message_id == "ins-1" and reply.metadata.src_node_id == 1
    w, b = view(reply.content["arrays"]["w"]), view(reply.content["arrays"]["b"])
    assert w.dtype == np.float32 and w.shape == (2, 2)
    np.testing.assert_array_equal(w, np.full((2, 2), (1 * 1.0 + 3 * 4.0) / 4, np.float32))
    np.testing.assert_array_equal(b, np.array([3 / 4, 1.0, 5 / 4], np.float32))
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 4 and isinstance(metrics["num-examples"], int)
    assert metrics["train_loss"] == pytest.approx((1 * 0.5 + 3 * 1.5) / 4)
    assert model_reply_reject_reason(reply, Layout.of(record_from_numpy(glob))) is None


def test_nothing_folded_gives_no_reply() -> None:
    assert _fold({"w": np.zeros(2, np.float32)}).reply() is None


def test_fold_replies_refused_for_a_strategy_that_is_no_weighted_average() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"engine": {"fold_replies": True}, "strategy": {"name": "fedlion"}})
    assert "engine.fold_replies" in str(err.value) and "weighted average" in str(err.value)


SMALL = ("train.rounds=3", "train.clients_per_round=8", "eval.federated_every=0",
         "engine.profiles=[{name='cpu', actors=2}]")


@pytest.mark.slow
def test_folded_run_equals_unfolded_within_float_tolerance_and_meters_every_client(
        tmp_path: Path) -> None:
    code, plain = run_cli(tmp_path / "plain", *SMALL, engine="ray")
    assert code == 0
    code, folded = run_cli(tmp_path / "folded", *SMALL, "engine.fold_replies=true",
                           "engine.fold_block=3", engine="ray")
    assert code == 0
    rows, frows = read_metrics(plain)[1:], read_metrics(folded)[1:]
    assert len(rows) == len(frows) == 3
    for row, frow in zip(rows, frows, strict=True):
        # the meter counts every client's own reply, measured in the actor
        for key in ("uplink_replies", "uplink_bytes", "uplink_payload_bytes",
                    "uplink_bytes_by_client", "downlink_bytes", "train_replies"):
            assert frow[key] == row[key], key
        assert frow["train_replies"] == 8 and frow["folded_replies"] == 8
        assert "folded_replies" not in row
        assert frow["central_loss"] == pytest.approx(row["central_loss"], rel=1e-4)
        assert frow["train_loss"] == pytest.approx(row["train_loss"], rel=1e-4)
    # the same seed and fold blocks of 3 clients: the same bits on 3 actors as on 2 (each
    # block runs on one actor, and the blocks' replies are averaged in instruction order)
    code, again = run_cli(tmp_path / "again", *SMALL, "engine.fold_replies=true",
                          "engine.fold_block=3",
                          "engine.profiles=[{name='cpu', actors=3, num_cpus=0.5}]", engine="ray")
    assert code == 0
    assert metrics_without_times(again) == metrics_without_times(folded)
    placed = json.loads((again / "actors.json").read_text())
    assert sorted(len(a["partitions"]) for a in placed) == [3, 3, 4]  # whole blocks


@pytest.mark.slow
def test_folding_with_a_deadline_drops_the_same_stragglers(tmp_path: Path) -> None:
    """Slow devices miss the deadline in simulated time: their replies stay out of the sum
    (the actor applies the clock's own test) and the clock drops them as without folding."""
    clock = ("train.rounds=2", "train.clients_per_round=10", "eval.federated_every=0",
             "engine.compute_timer=fixed", "engine.fixed_compute_s=1.0",
             "engine.deadline_s=3.0",
             "engine.profiles=[{name='fast', share=0.5, actors=1}, "
             "{name='slow', share=0.5, speed=0.25, actors=1}]")
    code, plain = run_cli(tmp_path / "plain", *clock, engine="ray")
    assert code == 0
    code, folded = run_cli(tmp_path / "folded", *clock, "engine.fold_replies=true",
                           engine="ray")
    assert code == 0
    for row, frow in zip(read_metrics(plain)[1:], read_metrics(folded)[1:], strict=True):
        assert row["stragglers"] == frow["stragglers"] > 0
        for key in ("train_replies", "uplink_replies", "uplink_bytes", "simulated_seconds"):
            assert frow[key] == row[key], key
        assert frow["folded_replies"] == frow["train_replies"] == 10 - row["stragglers"]
        assert frow["central_loss"] == pytest.approx(row["central_loss"], rel=1e-4)


def test_fold_block_without_folding_is_reported_as_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        code, _ = run_cli(tmp_path / "r", "train.rounds=1", "eval.federated_every=0",
                          "engine.fold_block=3")
    assert code == 0
    assert "engine.fold_block = 3 is ignored" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # the default block size says nothing
        code, _ = run_cli(tmp_path / "d", "train.rounds=1", "eval.federated_every=0")
    assert code == 0 and "fold_block" not in caplog.text
