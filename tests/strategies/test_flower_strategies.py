"""Flower's own strategies by name (``flwr:FedProx``): settings from their constructors, the
FedProx client half, clear refusals, and runs that learn and are metered like fedsim's own."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedXgbBagging,
    QFedAvg,
)
from strategy_fixtures import NodeGrid, local_round, run_config, setup_config, tiny_data, tiny_model

from fedsim.config import ConfigError, load_config
from strategies.flower_adapter import flower_strategy_spec, parameter_docs
from strategies.local_prox import LocalProx
from strategies.local_sgd import LocalSGD
from strategies.registry import Sampling, get_strategy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ISSUE_STRATEGIES = ("FedAvgM", "FedProx", "FedYogi", "FedAdagrad", "FedMedian", "FedTrimmedAvg",
                    "Krum", "Bulyan")


def _prox_content(mu: float) -> RecordDict:
    return RecordDict({"config": ConfigRecord({"proximal-mu": mu})})


def test_fedprox_client_follows_the_gradient_of_the_proximal_objective() -> None:
    """LocalProx's steps equal SGD on F(w) + mu/2 ||w - w0||^2 written out with autograd."""
    data, mu, lr, steps = tiny_data(), 0.7, 0.2, 4
    model = tiny_model()
    update = LocalProx().train(local_round(model, data, steps, lr, content=_prox_content(mu)))

    reference = tiny_model()
    anchor = [p.detach().clone() for p in reference.parameters()]
    rnd = local_round(reference, data, steps, lr)  # same seeded batches
    for _ in range(steps):
        xb, yb = rnd.batches.next()
        reference.zero_grad()
        prox = sum(((p - a) ** 2).sum() for p, a in zip(reference.parameters(), anchor,
                                                         strict=True))
        loss = torch.nn.functional.cross_entropy(reference(xb), yb) + mu / 2 * prox
        loss.backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= lr * p.grad
    for key, value in reference.state_dict().items():
        assert torch.allclose(torch.from_numpy(update.arrays[key].numpy()), value, atol=1e-6)
    plain = LocalSGD().train(local_round(tiny_model(), data, steps, lr))
    assert not torch.equal(torch.from_numpy(plain.arrays["weight"].numpy()),
                           torch.from_numpy(update.arrays["weight"].numpy()))


def test_fedprox_client_with_mu_zero_is_local_sgd_bit_for_bit() -> None:
    data = tiny_data()
    prox = LocalProx().train(local_round(tiny_model(), data, 3, 0.1, content=_prox_content(0.0)))
    sgd = LocalSGD().train(local_round(tiny_model(), data, 3, 0.1))
    for key in sgd.arrays:
        assert prox.arrays[key].numpy().tobytes() == sgd.arrays[key].numpy().tobytes()


def test_a_negative_or_nan_mu_from_the_server_is_refused() -> None:
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="proximal-mu"):
            LocalProx().train(local_round(tiny_model(), tiny_data(), 1, 0.1,
                                          content=_prox_content(bad)))


def test_settings_are_the_constructor_arguments_with_flowers_defaults_and_docs() -> None:
    def fields(name: str) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(get_strategy(f"flwr:{name}").params_cls)}

    assert fields("FedTrimmedAvg")["beta"].default == 0.2
    assert fields("FedTrimmedAvg")["beta"].metadata["doc"].startswith("Fraction to cut off")
    assert fields("FedProx")["proximal_mu"].default == 0.0
    assert fields("Krum")["num_malicious_nodes"].type is int
    assert set(fields("FedAdam")) == {"eta", "beta_1", "beta_2", "tau"}  # eta_l is train.lr
    assert set(fields("QFedAvg")) == {"q"}  # client lr and loss key set by fedsim
    assert fields("FedAvg") == {}


def test_numpydoc_parameter_lines_are_read() -> None:
    doc = "Title.\n\nParameters\n----------\nbeta : float (default: 0.2)\n    Fraction to " \
          "cut off. Second sentence.\nq : float\n    Fairness."
    assert parameter_docs(doc) == {"beta": "Fraction to cut off", "q": "Fairness"}


def test_the_client_learning_rate_of_qfedavg_is_train_lr() -> None:
    spec = get_strategy("flwr:QFedAvg")
    strategy = spec.build_server(spec.params_cls(), Sampling(2, 2, 0))
    strategy.bind_nodes({11: 0, 12: 1}, seed=0)
    arrays = ArrayRecord(tiny_model().state_dict())
    list(strategy.configure_train(1, arrays, setup_config(lr=0.037, steps=1), NodeGrid([11, 12])))
    assert isinstance(strategy, QFedAvg) and strategy.client_learning_rate == 0.037
    assert strategy.train_loss_key == "train-loss"


def test_what_cannot_be_a_fedsim_strategy_is_refused_with_the_reason() -> None:
    with pytest.raises(TypeError, match="XGBoost"):
        flower_strategy_spec(FedXgbBagging)
    with pytest.raises(TypeError, match="FedAvg"):
        flower_strategy_spec(DifferentialPrivacyServerSideFixedClipping)
    with pytest.raises(TypeError, match="not a Flower Strategy"):
        flower_strategy_spec(dict)
    assert flower_strategy_spec(FedAvg).name == "flwr:FedAvg"
    assert get_strategy("flwr:FedAvgM").folds_replies
    assert not get_strategy("flwr:Krum").folds_replies


@pytest.mark.parametrize(("overrides", "field"), [
    (["strategy.name=flwr:NoSuchStrategy"], "strategy.name"),
    (["strategy.name=flwr:FedXgbBagging"], "strategy.name"),
    (["strategy.name=flwr:FedTrimmedAvg", "strategy.beta=wide"], "strategy.beta"),
    (["strategy.name=flwr:FedProx", "strategy.mu=0.1"], "strategy.mu"),
    (["strategy.name=flwr:Krum", "strategy.num_malicious_nodes=1.5"],
     "strategy.num_malicious_nodes"),
])
def test_bad_settings_name_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "quickstart.toml", overrides)
    assert err.value.field == field


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("wall_seconds", "round_seconds", "meter_seconds"):
            row.pop(key, None)
        for key in [k for k in row if "downlink" in k]:  # the setup names the strategy
            row.pop(key)
    return rows


def test_flower_fedavg_and_fedprox_with_mu_zero_equal_fedsims_fedavg(tmp_path: Path) -> None:
    common = ("train.rounds=2", "output.plots=false")
    builtin = _rows(run_config(tmp_path / "builtin", "quickstart.toml", *common))
    assert _rows(run_config(tmp_path / "flwr", "quickstart.toml", "strategy.name=flwr:FedAvg",
                            *common)) == builtin
    assert _rows(run_config(tmp_path / "prox0", "quickstart.toml", "strategy.name=flwr:FedProx",
                            *common)) == builtin
    prox = _rows(run_config(tmp_path / "prox", "quickstart.toml", "strategy.name=flwr:FedProx",
                            "strategy.proximal_mu=1.0", *common))
    assert prox[-1]["central_loss"] != builtin[-1]["central_loss"]
    assert prox[-1]["uplink_bytes"] == builtin[-1]["uplink_bytes"]  # same fp32 model uplink


@pytest.mark.parametrize("name", ISSUE_STRATEGIES)
def test_each_flower_strategy_learns_and_is_metered(tmp_path: Path, name: str) -> None:
    rows = _rows(run_config(tmp_path / name, "quickstart.toml", f"strategy.name=flwr:{name}",
                            "train.rounds=3", "eval.federated_every=0", "output.plots=false"))
    assert rows[-1]["central_accuracy"] > rows[0]["central_accuracy"] + 0.15
    assert rows[-1]["train_replies"] == 10
    # the whole fp32 model goes uplink: 650 parameters x 4 bytes per client, plus framing
    assert rows[-1]["uplink_payload_bytes_per_client"] == 650 * 4
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert summary["strategy"] == f"flwr:{name}"
