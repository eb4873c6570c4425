"""A setting the chosen strategy's client half never reads is refused, naming the setting,
its value and the strategy (FedLion ran with train.weight_decay = 0.5 exactly as with 0)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.cli import main
from fedsim.config.errors import ConfigError
from fedsim.config.load import load_config
from fedsim.config.schema import TrainConfig
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.training import LocalBatches
from strategies.client_half import LocalRound
from strategies.fedlion import FedLionClient
from strategies.registry import get_strategy, strategy_names

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(("setting", "value"), [("weight_decay", 0.5), ("momentum", 0.9)])
def test_fedlion_refuses_train_settings_it_ignores(setting: str, value: float) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "fedlion.toml", [f"train.{setting}={value}"])
    assert err.value.field == f"train.{setting}" and err.value.value == value
    assert "'fedlion'" in str(err.value) and "ignores" in str(err.value)


def test_the_refusal_reaches_the_command_line(capsys: pytest.CaptureFixture,
                                              tmp_path: Path) -> None:
    rc = main(["run", str(CONFIGS / "fedlion.toml"), "--out", str(tmp_path / "r"),
               "--set", "train.weight_decay=0.5"])
    assert rc != 0
    assert "train.weight_decay = 0.5" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_strategies_that_use_a_setting_accept_it() -> None:
    assert load_config(CONFIGS / "fedavg.toml", ["train.weight_decay=0.5"]).train \
        .weight_decay == 0.5
    assert load_config(CONFIGS / "fafed.toml", ["train.weight_decay=0.01"]).train \
        .weight_decay == 0.01
    # the default value is fine for every strategy, and every shipped config loads
    for config in sorted(CONFIGS.glob("*.toml")):
        load_config(config)


def test_declared_uses_name_real_settings() -> None:
    names = {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    for name in strategy_names():
        uses = get_strategy(name).uses
        assert uses is None or uses <= names, name


def _fedlion_update(weight_decay: float, momentum: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(40, 5)).astype(np.float32),
                        rng.integers(0, 3, size=40).astype(np.int64))
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    train = TrainConfig(lr=0.05, local_steps=4, batch_size=8, weight_decay=weight_decay,
                        momentum=momentum)
    from flwr.app import RecordDict

    update = FedLionClient().train(LocalRound(
        model=model, batches=LocalBatches(data, 8, "shuffle", 3), steps=4, train=train,
        params={}, content=RecordDict(), state=RecordDict(), server_round=1, partition_id=0,
        noise_seed=1))
    return np.concatenate([a.numpy().reshape(-1).view(np.uint8) for rec in
                           (update.arrays, *update.extra.values()) for a in rec.values()])


def test_fedlion_really_ignores_what_it_declares_unused() -> None:
    """The declaration is true: FedLion's reply is byte for byte the same with either."""
    base = _fedlion_update(0.0, 0.0)
    np.testing.assert_array_equal(base, _fedlion_update(0.5, 0.0))
    np.testing.assert_array_equal(base, _fedlion_update(0.0, 0.9))
