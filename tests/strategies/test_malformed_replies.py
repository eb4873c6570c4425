"""A malformed reply (wrong length, wrong dtype, NaN/Inf, truncated bits, missing parts) is
rejected and counted in the round's metrics; the round goes on with the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from strategy_fixtures import (
    NodeGrid,
    local_round,
    reply_to,
    run_config,
    setup_config,
    tiny_data,
    tiny_model,
)

from fedsim.results.writer import read_metrics
from strategies import zsignfedavg
from strategies.client_half import ClientUpdate
from strategies.fedavg import FedAvgStrategy
from strategies.fedlion import MOMENTUM_KEY, FedLionClient, FedLionStrategy
from strategies.local_sgd import LocalSGD
from strategies.vector import Layout
from strategies.zsignfedavg import ZSignClient, ZSignStrategy

NODES = [31, 32, 33, 34]


def _bits_update(update: ClientUpdate, bits: np.ndarray) -> ClientUpdate:
    return ClientUpdate(ArrayRecord({"bits": Array(bits)}), update.metrics, update.extra)


def _corruptions(update: ClientUpdate) -> dict[str, ClientUpdate]:
    bits = update.arrays["bits"].numpy()
    return {
        "truncated": _bits_update(update, bits[:-1]),
        "too long": _bits_update(update, np.concatenate([bits, bits[:1]])),
        "wrong dtype": _bits_update(update, bits.astype(np.float32)),
        "NaN": _bits_update(update, np.full(bits.shape, np.nan, np.float32)),
        "2-D": _bits_update(update, bits.reshape(1, -1)),
        "wrong key": ClientUpdate(ArrayRecord({"x": Array(bits)}), update.metrics),
    }


@pytest.mark.parametrize("kind", ["truncated", "too long", "wrong dtype", "NaN", "2-D",
                                  "wrong key"])
def test_malformed_sign_reply_is_rejected_and_the_round_continues(kind: str) -> None:
    strategy = ZSignStrategy(sigma=0.1, fraction_train=1.0, min_train_nodes=4,
                             min_available_nodes=4)
    strategy.bind_nodes({n: i for i, n in enumerate(NODES)}, seed=0)
    arrays = ArrayRecord(tiny_model().state_dict())
    messages = list(strategy.configure_train(1, arrays, setup_config(0.1, 2), NodeGrid(NODES)))
    updates = [ZSignClient(sigma=0.1).train(local_round(tiny_model(), tiny_data(seed=i), 2, 0.1,
                                                        noise_seed=i))
               for i in range(4)]
    good = [reply_to(m, u) for m, u in zip(messages[:3], updates[:3], strict=True)]
    bad = reply_to(messages[3], _corruptions(updates[3])[kind])
    new_arrays, _ = strategy.aggregate_train(1, [bad, *good])
    assert strategy.round_report["train_rejected"] == 1
    assert strategy.round_report["train_replies"] == 3
    assert strategy.reply_problems[0]["partition"] == 3
    assert strategy.reply_problems[0]["kind"] == "rejected"
    # the same step as from the three good replies alone
    ref = ZSignStrategy(sigma=0.1, fraction_train=1.0, min_train_nodes=3, min_available_nodes=3)
    ref.bind_nodes({n: i for i, n in enumerate(NODES[:3])}, seed=0)
    ref.configure_train(1, arrays, setup_config(0.1, 2), NodeGrid(NODES[:3]))
    ref_arrays, _ = ref.aggregate_train(1, good)
    layout = Layout.of(arrays)
    np.testing.assert_array_equal(layout.flatten(new_arrays), layout.flatten(ref_arrays))


def test_malformed_fedlion_and_fedavg_replies_are_rejected() -> None:
    arrays = ArrayRecord(tiny_model().state_dict())
    lion = FedLionStrategy(fraction_train=1.0, min_train_nodes=4, min_available_nodes=4)
    messages = list(lion.configure_train(1, arrays, setup_config(0.1, 3), NodeGrid(NODES)))
    ok = FedLionClient().train(local_round(tiny_model(), tiny_data(), 3, 0.1,
                                           content=messages[0].content))
    mom = ok.extra[MOMENTUM_KEY]["values"].numpy()
    nan_mom = ClientUpdate(ok.arrays, ok.metrics,
                           {MOMENTUM_KEY: ArrayRecord({"values": Array(mom * np.nan)})})
    out_of_range = ClientUpdate(ok.arrays, {**ok.metrics, "local-steps": 1}, ok.extra)
    no_momentum = ClientUpdate(ok.arrays, ok.metrics)
    replies = [reply_to(messages[0], ok), reply_to(messages[1], nan_mom),
               reply_to(messages[2], out_of_range), reply_to(messages[3], no_momentum)]
    new_arrays, _ = lion.aggregate_train(1, replies)
    assert new_arrays is not None
    assert lion.round_report["train_rejected"] == 3
    reasons = " | ".join(r["reason"] for r in lion.reply_problems)
    assert "NaN" in reasons and "momentum" in reasons

    avg = FedAvgStrategy(fraction_train=1.0, min_train_nodes=3, min_available_nodes=3)
    messages = list(avg.configure_train(1, arrays, setup_config(0.1, 3), NodeGrid(NODES[:3])))
    model = tiny_model()
    fine = LocalSGD().train(local_round(model, tiny_data(), 3, 0.1))
    sd = {k: v.numpy().copy() for k, v in fine.arrays.items()}
    sd["weight"][0, 0] = np.inf
    inf_update = ClientUpdate(ArrayRecord({k: Array(v) for k, v in sd.items()}), fine.metrics)
    short = ClientUpdate(ArrayRecord({"weight": fine.arrays["weight"]}), fine.metrics)
    replies = [reply_to(messages[0], fine), reply_to(messages[1], inf_update),
               reply_to(messages[2], short)]
    new_arrays, _ = avg.aggregate_train(1, replies)
    assert new_arrays is not None and avg.round_report["train_rejected"] == 2
    no_weight = reply_to(messages[0], fine)
    no_weight.content["metrics"] = MetricRecord({"train-loss": 1.0})
    assert avg.reject_reason(no_weight) is not None
    assert isinstance(no_weight.content, RecordDict)


def test_corrupt_clients_are_counted_in_metrics_and_the_run_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_train = zsignfedavg.ZSignClient.train

    def corrupting(self, local):
        update = real_train(self, local)
        if local.partition_id in (2, 5):
            bits = update.arrays["bits"].numpy()
            return _bits_update(update, bits[: len(bits) // 2])  # truncated transfer
        return update

    monkeypatch.setattr(zsignfedavg.ZSignClient, "train", corrupting)
    run_dir = run_config(tmp_path / "run", "zsignfedavg.toml", "task.model=logreg",
                         "task.num_clients=20", "train.clients_per_round=20", "train.rounds=3",
                         "output.plots=false")
    rows = [r for r in read_metrics(run_dir) if r["round"] > 0]
    assert [r["train_rejected"] for r in rows] == [2, 2, 2]
    assert [r["train_replies"] for r in rows] == [18, 18, 18]
    assert rows[-1]["central_accuracy"] > 0.3


def test_a_missing_node_does_not_stall_the_round(caplog: pytest.LogCaptureFixture) -> None:
    """Flower's sampler would wait forever for the 4th node (all 4 train each round); the
    strategy waits node_wait_s, then the round goes on with the 3 nodes that are there."""
    import logging
    import time

    strategy = FedAvgStrategy(fraction_train=1.0, min_train_nodes=4, min_available_nodes=4)
    strategy.bind_nodes({n: i for i, n in enumerate(NODES)}, seed=0)
    strategy.node_wait_s = 0.5
    arrays = ArrayRecord(tiny_model().state_dict())
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="fedsim"):
        messages = list(strategy.configure_train(1, arrays, setup_config(0.1, 2),
                                                 NodeGrid(NODES[:3])))
    assert time.monotonic() - start < 5
    assert sorted(m.metadata.dst_node_id for m in messages) == sorted(NODES[:3])
    assert "only 3 of the 4 nodes" in caplog.text
    assert (strategy.min_train_nodes, strategy.min_available_nodes) == (4, 4)
