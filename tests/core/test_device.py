"""``train.device``: what each value means in which process, and the errors for bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fedsim.tasks.device as device_module
from fedsim.config import config_from_dict
from fedsim.config.errors import ConfigError
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.device import resolve_device, valid_device
from fedsim.tasks.training import LocalBatches, sgd_steps


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_accepted_devices(value: str) -> None:
    assert valid_device(value)
    assert config_from_dict({"train": {"device": value}}).train.device == value


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_a_bad_device_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(ConfigError, match="train.device") as err:
        config_from_dict({"train": {"device": value}})
    assert "'auto', 'cpu', 'cuda' or 'cuda:N'" in str(err.value)


@pytest.mark.parametrize(("cuda", "ray_gpus", "expected"), [
    (False, None, "cpu"),       # no CUDA anywhere: the CPU
    (False, ["0"], "cpu"),      # a logical GPU from Ray on a machine without CUDA
    (True, None, "cuda"),       # a deployed node or the in-process engine with a GPU
    (True, [], "cpu"),          # a Ray actor of a CPU-only profile on a GPU machine
    (True, ["1"], "cuda"),      # a Ray actor given a (fraction of a) GPU
])
def test_auto_follows_the_gpus_ray_gave_the_process(monkeypatch, cuda, ray_gpus,
                                                    expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(device_module, "_ray_actor_gpus", lambda: ray_gpus)
    assert resolve_device("auto") == torch.device(expected)


def test_cpu_is_cpu_even_where_cuda_exists(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cpu") == torch.device("cpu")


def test_asking_for_cuda_without_it_names_the_field(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"train.device = 'cuda:1' but torch sees no CUDA"):
        resolve_device("cuda:1")


def test_the_driver_is_not_a_ray_actor() -> None:
    """Outside any Ray actor (here: no Ray at all) the rule sees no assignment."""
    assert device_module._ray_actor_gpus() is None


def test_batches_on_an_explicit_cpu_device_are_the_default_bits() -> None:
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.normal(size=(40, 5)).astype(np.float32),
                        rng.integers(0, 3, size=40).astype(np.int64))
    models = []
    for dev in (None, torch.device("cpu")):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 3)
        sgd_steps(model, LocalBatches(data, 8, "replacement", 4, device=dev), 6, 0.1)
        models.append(model.state_dict())
    for key in models[0]:
        assert torch.equal(models[0][key], models[1][key])


# ------------------------------------------------------------------------ eval.device
@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1"])
def test_eval_device_takes_the_same_values(value: str) -> None:
    assert config_from_dict({"eval": {"device": value}}).eval.device == value


def test_a_bad_eval_device_is_refused_naming_its_field() -> None:
    with pytest.raises(ConfigError, match="eval.device") as err:
        config_from_dict({"eval": {"device": "gpu"}})
    assert "'auto', 'cpu', 'cuda' or 'cuda:N'" in str(err.value)


def test_cuda_evaluation_is_refused_for_task_kinds_that_evaluate_on_the_cpu() -> None:
    cfg = {"task": {"kind": "diffusion", "model": "eps-mlp"}, "strategy": {"name": "fedavg"}}
    assert config_from_dict({**cfg, "eval": {"device": "auto"}}).eval.device == "auto"
    with pytest.raises(ConfigError, match="eval.device") as err:
        config_from_dict({**cfg, "eval": {"device": "cuda"}})
    assert "task.kind = 'diffusion'" in str(err.value)


def test_the_evaluation_device_error_names_eval_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^eval.device = 'cuda' but torch sees no CUDA"):
        resolve_device("cuda", "eval.device")
