"""FedLion packs Delta (a sum of E signs, an integer in [-E, E]) in k = ceil(log2(2E+1)) <= 16
bits, which hold E <= 32767; the client refused E > 16383 (half the codec's range), so every
client of such a run failed and the run exited 0. Now E up to 32767 trains and aggregates, and
more is refused before anything starts, naming train.local_steps (or train.local_epochs) and
the allowed range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.comm.int_codec import IntCodec
from fedsim.config.errors import ConfigError
from fedsim.config.load import load_config
from strategies.fedlion import MAX_STEPS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_limit_is_the_codec_bound() -> None:
    assert MAX_STEPS == 32767
    edge = np.array([-MAX_STEPS, 0, MAX_STEPS, 7], np.float32)
    codec = IntCodec(bound=MAX_STEPS)
    assert codec.bits == 16
    np.testing.assert_array_equal(codec.decode(codec.encode(edge), edge.shape), edge)
    with pytest.raises(ValueError, match="bits"):
        IntCodec(bound=MAX_STEPS + 1)


def test_more_than_16383_steps_reach_the_server_and_are_aggregated() -> None:
    """A reply of E = 20000 (refused by every client before) decodes and moves the model."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
    from robust_fixtures import NodeGrid, setup_config

    from fedsim.comm.float_codec import FloatCodec
    from strategies.fedlion import MOMENTUM_KEY, FedLionStrategy

    lion = FedLionStrategy(fraction_train=1.0, min_train_nodes=1, min_available_nodes=1)
    lion.bind_nodes({5: 0}, seed=0)
    model = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    [msg] = lion.configure_train(1, model, setup_config(0.001, 20000), NodeGrid([5]))
    delta = np.array([20000, -20000, 17000, 0], np.float32)
    as_record = lambda arrays: ArrayRecord({k: Array(v) for k, v in arrays.items()})  # noqa: E731
    content = RecordDict({
        "arrays": as_record(IntCodec(bound=20000).encode(delta)),
        "metrics": MetricRecord({"num-examples": 10, "local-steps": 20000}),
        MOMENTUM_KEY: as_record(FloatCodec("fp32").encode(np.zeros(4, np.float32)))})
    arrays, _ = lion.aggregate_train(1, [Message(content, reply_to=msg)])
    assert lion.round_report["train_rejected"] == 0
    np.testing.assert_allclose(arrays["w"].numpy(), -0.001 * delta, rtol=1e-6)


def test_too_many_local_steps_are_refused_naming_the_setting() -> None:
    assert load_config(CONFIGS / "fedlion.toml",
                       [f"train.local_steps={MAX_STEPS}"]).train.local_steps == MAX_STEPS
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "fedlion.toml", [f"train.local_steps={MAX_STEPS + 1}"])
    assert err.value.field == "train.local_steps" and err.value.value == MAX_STEPS + 1
    assert "32767" in str(err.value) and "'fedlion'" in str(err.value)
    # other strategies have no such limit
    assert load_config(CONFIGS / "fedavg.toml", ["train.local_steps=20000"]).train \
        .local_steps == 20000


def test_too_many_local_epochs_are_refused() -> None:
    """With local_steps = 0, E = local_epochs * ceil(n / B) on each client's split."""
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "fedlion.toml", ["train.local_steps=0", "train.local_epochs=600",
                                               "train.batch_size=1"])
    assert err.value.field == "train.local_epochs" and "32767" in str(err.value)
    load_config(CONFIGS / "fedlion.toml", ["train.local_steps=0", "train.local_epochs=2"])


def test_the_run_does_not_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = main(["run", str(CONFIGS / "fedlion.toml"), "--out", str(tmp_path / "r"),
               "--set", "train.local_steps=32768"])
    assert rc != 0
    assert "train.local_steps = 32768" in capsys.readouterr().err
