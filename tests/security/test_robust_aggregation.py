"""Coordinate-wise median and trimmed mean (Yin et al. 2018, arXiv 1803.01498, Defs. 1-2):
hand-computed values, Flower's FedMedian / FedTrimmedAvg results, and fedavg / fedadam with
``robust.aggregation`` ignoring one poisoned model that moves the weighted mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.serverapp.strategy import FedMedian, FedTrimmedAvg
from flwr.serverapp.strategy.fedtrimmedavg import trim_mean
from robust_fixtures import model_record, reply, train_instructions

from fedsim.comm.npy import view
from fedsim.config.errors import ConfigError
from fedsim.config.load import load_config
from strategies.fedadam import FedAdamStrategy
from strategies.fedavg import FedAvgStrategy
from strategies.robust import coordinate_median, trimmed_mean

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NODES = [11, 12, 13, 14, 15]
CLIENTS = [  # five tiny models: key "w" (2 x 2), key "b" (3,)
    {"w": [[1, 9], [4, 0]], "b": [0, 5, 1]},
    {"w": [[2, 8], [5, 0]], "b": [1, 5, 2]},
    {"w": [[3, 7], [6, 0]], "b": [2, 5, 3]},
    {"w": [[4, 6], [7, 0]], "b": [3, 5, 4]},
    {"w": [[1000, -1000], [1e6, 0]], "b": [3e38, -3e38, 3e38]},  # the attacker
]


def _stack(key: str) -> np.ndarray:
    return np.asarray([c[key] for c in CLIENTS], dtype=np.float32)


def test_median_and_trimmed_mean_by_hand() -> None:
    np.testing.assert_array_equal(coordinate_median(_stack("w")), [[3, 7], [6, 0]])
    np.testing.assert_array_equal(coordinate_median(_stack("b")), [2, 5, 3])
    # beta = 0.2 of 5 values: int(1.0) = 1 cut at each end, mean of the middle three
    np.testing.assert_allclose(trimmed_mean(_stack("w"), 0.2), [[3, 7], [6, 0]])
    np.testing.assert_allclose(trimmed_mean(_stack("b")[:4], 0.25), [1.5, 5, 2.5])
    # beta = 0.1 of 5 values: int(0.5) = 0 cut: the plain mean (the attacker stays)
    np.testing.assert_allclose(trimmed_mean(_stack("w"), 0.1), _stack("w").mean(axis=0))
    # an even number of values: the median is the mean of the middle two
    np.testing.assert_array_equal(coordinate_median(_stack("b")[:4]), [1.5, 5, 2.5])
    with pytest.raises(ValueError, match="trim_fraction"):
        trimmed_mean(_stack("w"), 0.5)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.2, 0.3, 0.45])
def test_trimmed_mean_is_flowers(beta: float) -> None:
    rng = np.random.default_rng(3)
    stack = rng.normal(size=(9, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(trimmed_mean(stack, beta), trim_mean(stack, beta))


def _replies(strategy, weights=(10, 10, 10, 10, 10)):
    start = model_record({"w": np.zeros((2, 2)), "b": np.zeros(3)})
    messages = train_instructions(strategy, NODES, start)
    return [reply(m, model_record({k: np.asarray(v) for k, v in c.items()}), w)
            for m, c, w in zip(messages, CLIENTS, weights, strict=True)]


@pytest.mark.parametrize(("aggregation", "flower"), [
    ("median", lambda: FedMedian(fraction_train=1.0, min_train_nodes=5, min_available_nodes=5)),
    ("trimmed-mean", lambda: FedTrimmedAvg(beta=0.2, fraction_train=1.0, min_train_nodes=5,
                                           min_available_nodes=5)),
])
def test_fedavg_robust_aggregation_equals_flowers_strategy(aggregation: str, flower) -> None:
    ours = FedAvgStrategy(fraction_train=1.0, min_train_nodes=5, min_available_nodes=5)
    ours.robust_aggregation, ours.trim_fraction = aggregation, 0.2
    ours.max_update_norm = 0.0  # the robust rule alone must hold the attacker off
    arrays, metrics = ours.aggregate_train(1, _replies(ours, weights=(1, 2, 3, 4, 2**53)))
    theirs, their_metrics = flower().aggregate_train(1, _replies(ours, (1, 2, 3, 4, 2**53)))
    for key in ("w", "b"):
        np.testing.assert_array_equal(view(arrays[key]), theirs[key].numpy())
        assert view(arrays[key]).dtype == np.float32
    np.testing.assert_array_equal(view(arrays["w"]), [[3, 7], [6, 0]])  # not the attacker's
    assert dict(metrics) == dict(their_metrics)
    mean = FedAvgStrategy(fraction_train=1.0, min_train_nodes=5, min_available_nodes=5)
    mean.max_update_norm = 0.0
    poisoned, _ = mean.aggregate_train(1, _replies(mean, weights=(1, 2, 3, 4, 2**53)))
    assert view(poisoned["w"])[0, 0] == pytest.approx(1000)  # the weighted mean: hijacked


def test_fedadam_steps_towards_the_median() -> None:
    """FedAdam's pseudo-gradient uses the robust aggregate: with the median its step is the
    one Flower's FedAdam takes when every client sends the median model."""
    robust = FedAdamStrategy(fraction_train=1.0, min_train_nodes=5, min_available_nodes=5)
    robust.robust_aggregation, robust.max_update_norm = "median", 0.0
    arrays, _ = robust.aggregate_train(1, _replies(robust))
    honest = FedAdamStrategy(fraction_train=1.0, min_train_nodes=5, min_available_nodes=5)
    honest.max_update_norm = 0.0
    start = model_record({"w": np.zeros((2, 2)), "b": np.zeros(3)})
    messages = train_instructions(honest, NODES, start)
    median = model_record({"w": np.asarray([[3, 7], [6, 0]]), "b": np.asarray([2, 5, 3])})
    ref, _ = honest.aggregate_train(1, [reply(m, median, 10) for m in messages])
    for key in ("w", "b"):
        np.testing.assert_allclose(view(arrays[key]), view(ref[key]), rtol=1e-6)
        assert np.all(np.abs(view(arrays[key])) < 1)  # a bounded Adam step, not 3e38


def test_robust_aggregation_is_refused_where_it_has_no_meaning() -> None:
    cfg = load_config(CONFIGS / "quickstart.toml", ['robust.aggregation="median"'])
    assert cfg.robust.aggregation == "median"
    with pytest.raises(ConfigError, match="robust.aggregation"):
        load_config(CONFIGS / "fedlion.toml", ['robust.aggregation="median"'])
    with pytest.raises(ConfigError, match="engine.fold_replies"):
        load_config(CONFIGS / "quickstart.toml", ['robust.aggregation="trimmed-mean"',
                                                "engine.fold_replies=true"])
    with pytest.raises(ConfigError, match="robust.trim_fraction"):
        load_config(CONFIGS / "quickstart.toml", ["robust.trim_fraction=0.5"])


@pytest.mark.parametrize("config", ["signsgd", "sto_signsgd", "zsignfedavg"])
def test_robust_settings_leave_a_sign_strategys_vote_rule_alone(config: str) -> None:
    """``[robust]`` sets the whole-model aggregation rule; a sign strategy's own
    ``aggregation`` (majority vote or mean of signs) is another setting and must survive it
    (it was overwritten with "mean", which stopped sto_signsgd from learning)."""
    from strategies.registry import get_strategy
    from strategies.robust import configure_robustness
    from strategies.spec import Sampling

    cfg = load_config(CONFIGS / f"{config}.toml")
    spec = get_strategy(cfg.strategy_name)
    strategy = spec.build_server(spec.params_cls(**cfg.strategy_params), Sampling(30, 10, 0))
    before = strategy.aggregation
    configure_robustness(strategy, cfg)
    assert strategy.aggregation == before == ("mean" if config == "zsignfedavg" else "majority")
    assert not hasattr(strategy, "robust_aggregation")
