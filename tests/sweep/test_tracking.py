"""[output] loggers: TensorBoard's and MLflow's own readers read back every round; unknown
or uninstalled loggers are refused naming the field (and the extra to install)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fedsim.cli import build_parser, main
from fedsim.config import ConfigError, load_config
from fedsim.results.writer import read_metrics

from .sweep_helpers import QUICKSTART, TINY

SETTINGS = [item for item in TINY[1::2] if not item.startswith("output.plots")]


def run_with(out: Path, *overrides: str) -> list[dict]:
    args = ["run", QUICKSTART, "--engine", "inprocess", "--out", str(out)]
    for item in [*SETTINGS, *overrides]:
        args += ["--set", item]
    assert main(args) == 0
    return read_metrics(out)


def test_unknown_logger_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"output\.loggers\[1\].*'tensorboard', 'mlflow'"):
        load_config(QUICKSTART, ['output.loggers=["tensorboard", "wandb"]'])


def test_missing_tracker_package_names_the_extra(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"output\.loggers\[0\].*fedsim\[tracking\]"):
        load_config(QUICKSTART, ['output.loggers=["mlflow"]'])


def test_tensorboard_reader_reads_every_round(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = run_with(tmp_path / "run", 'output.loggers=["tensorboard"]')
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"central_accuracy", "central_loss", "uplink_bytes", "downlink_bytes",
            "cumulative_uplink_bytes", "uplink_bits_per_param"} <= tags
    accuracy = events.Scalars("central_accuracy")
    assert [e.step for e in accuracy] == [0, 1, 2, 3]
    assert [e.value for e in accuracy] == pytest.approx(
        [r["central_accuracy"] for r in rows], rel=1e-6)
    assert [e.value for e in events.Scalars("uplink_bytes")] == [
        r["uplink_bytes"] for r in rows if "uplink_bytes" in r]


def test_mlflow_client_reads_the_run_its_params_and_every_round(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "mlruns").as_uri()
    rows = run_with(tmp_path / "run", 'output.loggers=["mlflow"]', f"output.mlflow_uri='{uri}'",
                    "output.mlflow_experiment='exp1'", "train.lr=0.2")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp1")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.2" and run.data.params["task.dataset"] == "digits"
    history = sorted(client.get_metric_history(run.info.run_id, "central_accuracy"),
                     key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert [m.value for m in history] == [r["central_accuracy"] for r in rows]
    assert run.data.metrics["summary.final_accuracy"] == rows[-1]["central_accuracy"]


def test_sweep_groups_its_mlflow_runs_under_its_name(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from fedsim.sweep.commands import prepare_sweep

    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["sweep", QUICKSTART, "--seeds", "2", "--name", "lrs",
                                      "--set", 'output.loggers=["mlflow"]',
                                      "--out", str(tmp_path / "s")])
    sweep_dir, manifest, _ = prepare_sweep(args)
    cfg = load_config(sweep_dir / manifest.trials[1].config, manifest.trials[1].overrides())
    assert cfg.output.mlflow_experiment == "lrs" and cfg.seed == 1
    assert cfg.output.mlflow_uri == (tmp_path / "mlruns").as_uri()
