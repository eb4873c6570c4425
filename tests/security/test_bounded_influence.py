"""Bounded influence of one reply ([robust]): a weight above the partition's training split is
clamped, an update whose L2 norm exceeds the bound is dropped, both reported; with 1 of 10
clients poisoning every reply, the guards, the median and the trimmed mean stay within 2
points of the clean run while the unguarded weighted mean collapses."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from robust_fixtures import model_record, reply, train_instructions

from clients.faults import ATTACK_VALUE, ATTACK_WEIGHT, poison
from fedsim.comm.float_codec import FloatCodec
from fedsim.comm.int_codec import IntCodec
from fedsim.comm.npy import view
from fedsim.config.errors import ConfigError
from fedsim.config.load import load_config
from fedsim.tasks.task import client_split
from strategies.fedadam import FedAdamStrategy
from strategies.fedavg import FedAvgStrategy
from strategies.fedlion import MOMENTUM_KEY, FedLionStrategy
from strategies.robust import configure_robustness

ROOT = Path(__file__).resolve().parents[2]
NODES = [21, 22, 23, 24]
START = {"w": np.zeros((2, 3)), "b": np.zeros(2)}


def _models(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    return [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=2)} for _ in range(n)]


def _strategy(cls=FedAvgStrategy, **guards):
    strategy = cls(fraction_train=1.0, min_train_nodes=4, min_available_nodes=4)
    for key, value in guards.items():
        setattr(strategy, key, value)
    return strategy


def _aggregate(strategy, models, weights):
    messages = train_instructions(strategy, NODES, model_record(START))
    replies = [reply(m, model_record(x), w) for m, x, w in zip(messages, models, weights,
                                                               strict=True)]
    arrays, _ = strategy.aggregate_train(1, replies)
    return {k: view(a).copy() for k, a in arrays.items()}


def test_a_huge_weight_is_clamped_to_the_partition_size_and_reported() -> None:
    models = _models()
    caps = {0: 50.0, 1: 50.0, 2: 50.0, 3: 40.0}
    guarded = _strategy(weight_caps=caps)
    got = _aggregate(guarded, models, [50, 30, 20, ATTACK_WEIGHT])
    assert guarded.round_report["train_clamped"] == 1
    assert guarded.round_report["train_rejected"] == 0
    [problem] = guarded.reply_problems
    assert problem["kind"] == "clamped" and problem["partition"] == 3
    assert "robust.weight_bound" in problem["reason"] and "clamped to 40" in problem["reason"]
    expected = _aggregate(_strategy(), models, [50, 30, 20, 40])  # as if it claimed its 40
    for key in got:
        np.testing.assert_array_equal(got[key], expected[key])
    hijacked = _aggregate(_strategy(), models, [50, 30, 20, ATTACK_WEIGHT])  # no caps
    np.testing.assert_allclose(hijacked["w"], models[3]["w"].astype(np.float32), rtol=1e-6)
    fixed = _strategy(default_weight_cap=25.0)  # a deployment's fixed bound
    _aggregate(fixed, models, [50, 30, 20, 10])
    assert fixed.round_report["train_clamped"] == 2


@pytest.mark.parametrize("cls", [FedAvgStrategy, FedAdamStrategy])
def test_huge_finite_values_are_rejected_by_the_norm_bound(cls) -> None:
    models = _models()
    poisoned = [*models[:3], {"w": np.full((2, 3), ATTACK_VALUE), "b": np.full(2, ATTACK_VALUE)}]
    guarded = _strategy(cls, max_update_norm=1e4)
    got = _aggregate(guarded, poisoned, [10, 10, 10, 10])
    assert guarded.round_report["train_rejected"] == 1
    [problem] = guarded.reply_problems
    assert problem["partition"] == 3 and "robust.max_update_norm" in problem["reason"]
    # a reply that is within the bound is kept: the same step as from the three alone
    ref = cls(fraction_train=1.0, min_train_nodes=3, min_available_nodes=3)
    ref.max_update_norm = 1e4
    messages = train_instructions(ref, NODES[:3], model_record(START))
    want, _ = ref.aggregate_train(1, [reply(m, model_record(x), 10)
                                      for m, x in zip(messages, models[:3], strict=True)])
    for key in got:
        np.testing.assert_array_equal(got[key], view(want[key]))
    # what the bound prevents: FedAvg's model is hijacked; FedAdam's second moment
    # overflows to inf, which freezes the model for good (every later step is 0)
    victim = _strategy(cls)
    unguarded = _aggregate(victim, poisoned, [10, 10, 10, 10])
    if cls is FedAvgStrategy:
        assert np.abs(unguarded["w"]).max() > 1e30
    else:
        assert not all(np.isfinite(v).all() for v in victim.v_t.values())


def test_fedlion_momentum_is_norm_bounded_its_integer_update_by_its_codec() -> None:
    lion = _strategy(FedLionStrategy, max_update_norm=1e4)
    model = model_record(START)
    messages = train_instructions(lion, NODES, model, steps=2)
    d = 8

    def lion_reply(msg, momentum: float):
        delta = ArrayRecord({k: Array(v) for k, v in IntCodec(bound=2).encode(
            np.full(d, 2.0, np.float32)).items()})
        mom = ArrayRecord({k: Array(v) for k, v in FloatCodec("fp32").encode(
            np.full(d, momentum, np.float32)).items()})
        out = reply(msg, delta, 10, **{MOMENTUM_KEY: mom})
        out.content["metrics"]["local-steps"] = 2
        return out

    replies = [lion_reply(m, 0.1) for m in messages[:3]] + [lion_reply(messages[3], ATTACK_VALUE)]
    arrays, _ = lion.aggregate_train(1, replies)
    assert arrays is not None
    assert lion.round_report["train_rejected"] == 1
    assert lion.reply_problems[0]["partition"] == 3
    assert "robust.max_update_norm" in lion.reply_problems[0]["reason"]
    np.testing.assert_allclose(lion.m, 0.1, rtol=1e-6)  # the global momentum is not poisoned


def test_the_server_caps_are_the_clients_training_splits() -> None:
    cfg = load_config(ROOT / "configs" / "quickstart.toml")
    strategy = _strategy()
    configure_robustness(strategy, cfg)
    honest = {p: len(client_split(cfg.task, cfg.seed, p)[0]) for p in range(10)}
    assert strategy.weight_caps == {p: float(n) for p, n in honest.items()}
    assert strategy.max_update_norm == cfg.robust.max_update_norm > 0
    fixed = load_config(ROOT / "configs" / "quickstart.toml",
                        ['robust.weight_bound="fixed"', "robust.max_examples=77"])
    configure_robustness(strategy, fixed)
    assert strategy.weight_caps == {} and strategy.default_weight_cap == 77.0
    with pytest.raises(ConfigError, match="faults.attackers"):
        load_config(ROOT / "configs" / "quickstart.toml", ["faults.attackers=[10]"])


def test_the_attack_poisons_weight_and_float_values_only() -> None:
    from flwr.app import MetricRecord, RecordDict

    packed = np.arange(4, dtype=np.uint8)
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(3, np.float32)),
                                                 "packed": Array(packed)}),
                          "metrics": MetricRecord({"num-examples": 12, "train-loss": 0.5})})
    out = poison(content, ["huge-weight", "huge-values"])
    assert out["metrics"]["num-examples"] == ATTACK_WEIGHT and np.isfinite(ATTACK_WEIGHT)
    assert out["metrics"]["train-loss"] == 0.5
    np.testing.assert_array_equal(out["arrays"]["w"].numpy(), np.full(3, ATTACK_VALUE, np.float32))
    np.testing.assert_array_equal(out["arrays"]["packed"].numpy(), packed)
    assert poison(content, []) is content


def _poisoning_module():
    spec = importlib.util.spec_from_file_location("poisoning", ROOT / "benchmarks" /
                                                  "poisoning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_poisoning_table_guards_and_robust_rules_hold_the_unguarded_mean_collapses(
        tmp_path: Path) -> None:
    rows = {label: (acc, rejected, clamped) for label, acc, rejected, clamped in
            _poisoning_module().poisoning_table(12, tmp_path)}
    clean = rows["clean"][0]
    assert clean > 0.85
    assert rows["attacked, no guards (weighted mean)"][0] < 0.3
    for label in ("attacked, guards (weighted mean)", "attacked, no guards, median",
                  "attacked, no guards, trimmed mean (beta 0.1)",
                  "attacked by huge weight only, guards (weighted mean)"):
        assert rows[label][0] >= clean - 0.02, (label, rows[label][0], clean)
    assert rows["attacked, guards (weighted mean)"][1] == 12  # the attacker, every round
    assert rows["attacked by huge weight only, guards (weighted mean)"][2] == 12
    assert rows["clean"][1:] == (0, 0)  # the default guards never touch a clean run
    problems = [json.loads(line) for line in
                (tmp_path / "run2" / "client_problems.jsonl").read_text().splitlines()]
    assert {(p["partition"], p["kind"]) for p in problems} == {(3, "rejected")}


def test_an_engine_that_folds_replies_leaves_guarded_ones_to_the_server() -> None:
    """engine.fold_replies: the actor's check keeps replies the guards would clamp or drop
    out of its sums (they travel alone and the server's guards see them)."""
    strategy = _strategy(weight_caps={0: 50.0, 1: 50.0, 2: 50.0, 3: 40.0}, max_update_norm=1e4)
    messages = train_instructions(strategy, NODES, model_record(START))
    check = strategy.reply_fold().reject_reason
    models = _models()
    assert check(reply(messages[0], model_record(models[0]), 50)) is None
    assert "cap" in check(reply(messages[3], model_record(models[3]), 41))
    assert check(reply(messages[3], model_record(models[3]), 40)) is None
    huge = {"w": np.full((2, 3), ATTACK_VALUE), "b": np.full(2, ATTACK_VALUE)}
    assert "robust.max_update_norm" in check(reply(messages[1], model_record(huge), 10))
    import pickle

    pickle.dumps(strategy.reply_fold())  # it travels to the engine's actors
