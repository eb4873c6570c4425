"""Invalid configs fail before anything starts, with one message naming field, value, rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedsim.cli import main
from fedsim.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"task": {"alpha": -1}}, "task.alpha", "> 0"),
        ({"task": {"alpha": "big"}}, "task.alpha", "a number"),
        ({"task": {"dataset": "imagenet"}}, "task.dataset", "'digits'"),
        ({"task": {"num_clients": 0}}, "task.num_clients", "1 <= value <= 100000"),
        ({"task": {"alfa": 0.3}}, "task.alfa", "did you mean 'alpha'"),
        ({"train": {"rounds": 2.5}}, "train.rounds", "an integer"),
        ({"train": {"clients_per_round": 11}}, "train.clients_per_round",
         "at most task.num_clients = 10"),
        ({"train": {"local_steps": 0, "local_epochs": 0}}, "train.local_steps", "at least 1"),
        ({"train": {"batch_sampling": "random"}}, "train.batch_sampling", "'replacement'"),
        ({"task": {"model": "resnet20"}}, "task.model", "cannot train on 'digits'"),
        ({"task": {"partitioner": "natural"}}, "task.partitioner", "femnist"),
        ({"task": {"num_clients": 200, "min_partition_size": 10}},
         "task.min_partition_size", "at most 7"),
        ({"strategy": {"name": "fedsgd"}}, "strategy.name", "fedavg"),
        ({"strategy": {"name": "fedadam", "eta": 0}}, "strategy.eta", "> 0"),
        ({"strategy": {"name": "fedavg", "eta": 0.1}}, "strategy.eta", "unknown setting"),
        ({"seed": -3}, "seed", ">= 0"),
        ({"train": {"node_wait_s": -1}}, "train.node_wait_s", ">= 0"),
        ({"eval": {"target_accuracy": 1.5}}, "eval.target_accuracy", "<= 1.0"),
        ({"task": 5}, "task", "a table"),
    ],
)
def test_invalid_field_is_named(data: dict, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_defaults_are_valid_and_overrides_apply(quickstart_path: str) -> None:
    cfg = load_config(quickstart_path, ["train.rounds=3", "task.alpha=0.1",
                                        "strategy.name=fedadam", "strategy.eta=0.05"])
    assert cfg.train.rounds == 3
    assert cfg.task.alpha == 0.1
    assert cfg.strategy == {"name": "fedadam", "eta": 0.05, "beta_1": 0.9, "beta_2": 0.99,
                            "tau": 1e-3}


@pytest.mark.parametrize(
    ("argv_tail", "expected"),
    [
        (["--set", "train.rounds"], "expected KEY=VALUE"),
        (["--set", "-x"], "error: argument --set: expected one argument"),  # argparse's
        (["--set", "train.rounds=-1"], "train.rounds = -1 is invalid"),
        (["--set", "task.partitioner=random"], "task.partitioner = 'random' is invalid"),
        (["--set", "train.lr=0"], "train.lr = 0.0 is invalid"),
        (["--set", "task.alpha=0.01", "--set", "task.min_partition_size=60"],
         "task.min_partition_size = 60 is invalid: Dirichlet sampling"),
        (["--set", "train.device=gpu"], "train.device = 'gpu' is invalid: 'auto', 'cpu'"),
        pytest.param(["--set", "train.device=cuda"],
                     "train.device = 'cuda' is invalid: 'auto' or 'cpu': torch sees no CUDA",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
        # the central evaluation runs on this machine even when the clients join a cluster
        pytest.param(["--set", "eval.device=cuda", "--set", "engine.ray_address=127.0.0.1:1"],
                     "eval.device = 'cuda' is invalid: 'auto' or 'cpu': torch sees no CUDA",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
    ],
)
def test_cli_reports_bad_input_without_traceback(quickstart_path: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture,
                                                 argv_tail: list[str], expected: str) -> None:
    code = main(["run", quickstart_path, "--out", str(tmp_path / "run"), *argv_tail])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists(), "nothing may start for an invalid config"


def test_missing_and_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nalpha = ")
    assert main(["run", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_existing_results_are_never_overwritten(quickstart_path: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"round": 0}\n')
    assert main(["run", quickstart_path, "--out", str(out)]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"round": 0}\n'
