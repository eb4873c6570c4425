"""Model architectures: parameter counts and output shapes match their papers."""

from __future__ import annotations

import torch

from fedsim.tasks.models import build_model


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_digits_cnn_has_the_reference_size() -> None:
    model = build_model("digits-cnn", (1, 8, 8), 10)
    assert _params(model) == 38_282
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_fedlion_cnn_flattens_to_512_on_28x28() -> None:
    model = build_model("cnn", (1, 28, 28), 10)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert _params(model) == 1 * 16 * 64 + 16 + 16 * 32 * 16 + 32 + 512 * 32 + 32 + 32 * 10 + 10


def test_resnet20_groupnorm_has_no_batchnorm_buffers() -> None:
    model = build_model("resnet20", (3, 32, 32), 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert 260_000 < _params(model) < 280_000
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert list(model.buffers()) == []


def test_logreg_and_mlp_flatten_inputs() -> None:
    assert _params(build_model("logreg", (1, 8, 8), 10)) == 650
    assert build_model("mlp", (3, 32, 32), 10)(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
