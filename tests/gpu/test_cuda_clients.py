"""Clients on a real GPU (``train.device``): every strategy's client half, and a Ray profile
with a fractional GPU. Needs CUDA; run on a GPU machine with ``FEDSIM_TEST_GPU=1 pytest
tests/gpu`` (the rest of the suite hides GPUs, see tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
import torch

from fedsim.cli import main
from strategies.registry import strategy_names

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (FEDSIM_TEST_GPU=1 on a GPU machine)")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = ["train.rounds=3", "task.num_clients=6", "train.clients_per_round=6",
         "train.local_steps=5", "eval.central_every=1"]


def _run(out: Path, config: str | Path, *overrides: str, engine: str = "inprocess") -> \
        list[dict]:
    args = ["run", str(CONFIGS / config), "--out", str(out), "--engine", engine]
    for item in (*SMALL, *overrides):
        args += ["--set", item]
    assert main(args) == 0
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _strategy_configs() -> list[str]:
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    return [n for n in strategy_names() if n in names]


@pytest.mark.parametrize("strategy", _strategy_configs())
def test_each_strategy_trains_on_cuda_as_on_the_cpu(tmp_path, strategy) -> None:
    """The same run in process on the GPU and on the CPU: the same rounds, the same uplink
    bytes, loss within 5 % and accuracy within 10 points (float sums differ in their last bits
    on a GPU, and sign methods can flip a coordinate that sits at zero)."""
    rows = {dev: _run(tmp_path / dev, f"{strategy}.toml", f"train.device={dev}")
            for dev in ("cpu", "cuda")}
    cpu, gpu = rows["cpu"], rows["cuda"]
    assert [r["round"] for r in cpu] == [r["round"] for r in gpu]
    for a, b in zip(cpu, gpu, strict=True):
        assert a.get("uplink_bytes") == b.get("uplink_bytes")
    assert gpu[-1]["central_loss"] == pytest.approx(cpu[-1]["central_loss"], rel=0.05)
    assert abs(cpu[-1]["central_accuracy"] - gpu[-1]["central_accuracy"]) <= 0.1


def test_a_fractional_gpu_profile_trains_on_its_gpu(tmp_path) -> None:
    """Two profiles on the local Ray: half-GPU actors train on CUDA, CPU actors on the CPU."""
    config = tmp_path / "two-profiles.toml"
    config.write_text(tomli_w.dumps({
        "task": {"dataset": "digits", "model": "digits-cnn"},
        "engine": {"compute_timer": "wall", "profiles": [
            {"name": "cpu-box", "share": 0.5, "num_cpus": 1.0, "actors": 1},
            {"name": "gpu-half", "share": 0.5, "num_cpus": 1.0, "num_gpus": 0.5, "actors": 2}]}}))
    out = tmp_path / "run"
    rows = _run(out, config, "train.rounds=5", engine="ray")
    actors = json.loads((out / "actors.json").read_text())
    devices = {a["profile"]: a["auto_device"] for a in actors}
    assert devices == {"cpu-box": "cpu", "gpu-half": "cuda"}, actors
    assert all(a["gpu_ids"] for a in actors if a["profile"] == "gpu-half"), actors
    assert rows[-1]["central_accuracy"] > rows[0]["central_accuracy"]


def test_the_central_evaluation_on_cuda_matches_the_cpu() -> None:
    """``eval.device = cuda``: the same global model scores the same on the GPU (loss to
    float tolerance, at most one test example's prediction differs at a tie)."""
    from fedsim.config import config_from_dict
    from fedsim.tasks.kind import task_kind

    cfg = config_from_dict({"task": {"dataset": "digits", "model": "digits-cnn"}})
    kind = task_kind(cfg)
    arrays = kind.initial_arrays()
    cpu = kind.central_evaluator(Path("."), torch.device("cpu"))(arrays, 0)
    gpu_evaluator = kind.central_evaluator(Path("."), torch.device("cuda"))
    # the model and the test set live on the GPU (the test set copied there once)
    assert next(gpu_evaluator.model.parameters()).is_cuda
    assert gpu_evaluator.x.is_cuda and gpu_evaluator.y.is_cuda
    gpu = gpu_evaluator(arrays, 0)
    assert gpu["central_loss"] == pytest.approx(cpu["central_loss"], rel=1e-4)
    assert abs(gpu["central_accuracy"] - cpu["central_accuracy"]) <= 1 / len(gpu_evaluator.y)
