"""``fedsim.register_*``: a notebook's model registered by decorator runs in ``fedsim.run``."""

from __future__ import annotations

import pytest
from torch import nn

import fedsim
from fedsim.plugins import registry


def test_a_decorated_model_runs_in_a_federation_and_is_listed_as_decorator(tmp_path) -> None:
    @fedsim.register_model("notebook-mlp")
    def notebook_mlp(input_shape, num_classes):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(),
                             nn.Linear(32, num_classes))

    try:
        assert registry("model").entry("notebook-mlp").source == "decorator"
        result = fedsim.run("quickstart", engine="inprocess", out=tmp_path / "run",
                            progress=False, task={"model": "notebook-mlp"},
                            train={"rounds": 3}, output={"plots": False})
        assert result.summary["model"] == "notebook-mlp"
        assert result.metrics[-1]["central_accuracy"] > result.metrics[0]["central_accuracy"]
        assert result.summary["num_params"] == 64 * 32 + 32 + 32 * 10 + 10
    finally:
        registry("model").unregister("notebook-mlp")
    with pytest.raises(fedsim.ConfigError, match="task.model"):
        fedsim.run("quickstart", engine="inprocess", out=tmp_path / "gone", progress=False,
                   task={"model": "notebook-mlp"})


def test_an_unknown_extension_point_is_named() -> None:
    with pytest.raises(ValueError, match="unknown extension point 'optimizer'"):
        registry("optimizer")
