"""Each example of ``examples/own_*`` runs as its docstring says (from its own folder, the
plugin by dotted reference), with tiny settings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fedsim.cli import main

from helpers import metrics_without_times, run_cli, summary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def in_example(monkeypatch: pytest.MonkeyPatch):
    """Run from an example's folder (as a user would); forget its modules afterwards."""
    before = set(sys.modules)

    def enter(name: str) -> Path:
        folder = EXAMPLES / name
        monkeypatch.chdir(folder)
        monkeypatch.syspath_prepend(str(folder))
        return folder

    yield enter
    for module in set(sys.modules) - before:
        if module in ("fedprox", "nets", "csv_source"):
            del sys.modules[module]


def test_own_strategy_fedprox_learns(in_example, tmp_path: Path) -> None:
    in_example("own_strategy")
    code, out = run_cli(tmp_path / "run", "train.rounds=3", "task.num_clients=4",
                        "train.clients_per_round=4", config="fedprox.toml")
    assert code == 0
    rows = metrics_without_times(out)
    assert summary(out)["strategy"] == "fedprox:SPEC"
    assert rows[-1]["central_accuracy"] > rows[0]["central_accuracy"] + 0.3


def test_own_strategy_params_are_checked(in_example, tmp_path: Path, capsys) -> None:
    in_example("own_strategy")
    code, _ = run_cli(tmp_path / "run", "strategy.mu=-1", config="fedprox.toml")
    assert code != 0
    assert "strategy.mu = -1" in capsys.readouterr().err


def test_fedprox_client_step_is_the_proximal_gradient_step(in_example) -> None:
    """One step: w1 = w0 - lr (grad f(w0) + mu (w0 - w_global)), with w_global = w0 the
    proximal term is 0 on the first step and pulls back on the second."""
    in_example("own_strategy")
    from fedprox import FedProxClient  # the example's own module

    from strategies.client_half import LocalRound

    class Batches:
        torch_gen = None

        def next(self):
            return torch.ones(1, 2), torch.zeros(1, dtype=torch.int64)

        def loss(self, model, xb, yb, gen):
            return model(xb).sum()  # gradient of w is x = (1, 1) for every step

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.5]]))
    train = type("T", (), {"lr": 0.1})()
    local = LocalRound(model, Batches(), 2, train, {}, None, None, 1, 0, 0)
    FedProxClient(mu=2.0).train(local)
    w1 = torch.tensor([0.5, -0.5]) - 0.1  # first step: only the loss gradient
    w2 = w1 - 0.1 * (1.0 + 2.0 * (w1 - torch.tensor([0.5, -0.5])))
    assert torch.allclose(model.weight.detach()[0], w2)


def test_own_model_torchvision_resnet18(in_example, tmp_path: Path) -> None:
    folder = in_example("own_model")
    code, out = run_cli(tmp_path / "run", "train.rounds=1", "task.num_clients=2",
                        "train.clients_per_round=2", "train.local_steps=1",
                        config=str(folder / "resnet18.toml"))
    assert code == 0
    from nets import small_resnet18

    expected = sum(p.numel() for p in small_resnet18((1, 8, 8), 10).parameters())
    assert summary(out)["num_params"] == expected > 11_000_000


def test_own_dataset_csv_learns(in_example, tmp_path: Path) -> None:
    in_example("own_dataset")
    code, out = run_cli(tmp_path / "run", "train.rounds=3", config="csv.toml")
    assert code == 0
    result = summary(out)
    assert result["num_params"] == 4 * 200 + 200 + 200 * 3 + 3  # mlp on 4 features, 3 classes
    assert result["final_accuracy"] > 0.8


def test_examples_are_listed_with_their_settings(in_example, capsys) -> None:
    in_example("own_strategy")
    assert main(["list", "--params", "fedprox:SPEC"]) == 0
    assert "strategy.mu = 0.01" in capsys.readouterr().out
