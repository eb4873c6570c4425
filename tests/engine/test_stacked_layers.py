"""Stacked layers: K clients' gradients through grouped kernels equal each client's own
gradient (and vmap's), and networks that do not fit fall back to vmap."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from fedsim.tasks.models import LogisticRegression, digits_cnn, fedlion_cnn, mlp
from fedsim.tasks.stacked_layers import chain, stacked_forward
from fedsim.tasks.stacked_training import stacked_gradient
from fedsim.tasks.training import cross_entropy

K, B = 4, 6


def _mixed() -> nn.Module:
    """Bias-free and strided convolutions, average pooling, tanh, nested Sequentials."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False), nn.Tanh()),
        nn.Conv2d(5, 4, 2, dilation=2, padding="same"), nn.GELU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16, 7), nn.LeakyReLU(), nn.Linear(7, 3, bias=False))


CASES = {
    "digits-cnn": (digits_cnn, (1, 8, 8), 10),
    "fedlion-cnn": (fedlion_cnn, (1, 28, 28), 10),
    "mlp on images": (lambda: mlp((1, 8, 8), 10, hidden=12), (1, 8, 8), 10),
    "mlp on features": (lambda: nn.Sequential(nn.Linear(9, 5), nn.Sigmoid(), nn.Linear(5, 4)),
                        (9,), 4),
    "mixed": (_mixed, (3, 8, 8), 3),
}


def _stacked_inputs(model: nn.Module, shape: tuple[int, ...], classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    params = {n: p.detach().unsqueeze(0).repeat(K, *([1] * p.dim()))
              + 0.05 * torch.randn(K, *p.shape, generator=g)  # each client its own point
              for n, p in model.named_parameters()}
    xs = torch.randn(K, B, *shape, generator=g)
    ys = torch.randint(0, classes, (K, B), generator=g)
    return params, xs, ys


def _each_alone(model: nn.Module, params: dict, xs: torch.Tensor, ys: torch.Tensor,
                names: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    grads, losses = {n: [] for n in names}, []
    for k in range(K):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(params[n][k])
        model.zero_grad()
        loss = F.cross_entropy(model(xs[k]), ys[k])
        loss.backward()
        losses.append(loss.detach())
        for n, p in model.named_parameters():
            if n in grads:
                grads[n].append(p.grad.clone())
    return {n: torch.stack(g) for n, g in grads.items()}, torch.stack(losses)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("case", sorted(CASES))
def test_grouped_gradients_equal_each_client_alone_and_vmap(case: str) -> None:
    factory, shape, classes = CASES[case]
    torch.manual_seed(0)
    model = factory()
    assert stacked_forward(model) is not None  # the grouped path, not vmap
    params, xs, ys = _stacked_inputs(model, shape, classes, seed=1)
    names = list(params)
    grads, losses = stacked_gradient(model, {}, cross_entropy)(params, xs, ys)
    alone, alone_losses = _each_alone(model, params, xs, ys, names)
    assert max(_relative(grads[n], alone[n]) for n in names) < 1e-5
    assert _relative(losses, alone_losses) < 1e-5
    # the clients really differ: client 0's gradient is not client 1's
    assert _relative(grads[names[0]][0], alone[names[0]][1]) > 1e-3


def test_frozen_parameters_get_no_gradient_and_the_rest_are_exact() -> None:
    torch.manual_seed(3)
    model = digits_cnn()
    model[0].weight.requires_grad_(False)
    params, xs, ys = _stacked_inputs(model, (1, 8, 8), 10, seed=3)
    frozen = {"0.weight": model[0].weight.detach()}
    trained = {n: t for n, t in params.items() if n not in frozen}
    for k in range(K):
        params["0.weight"][k] = frozen["0.weight"]
    grads, _ = stacked_gradient(model, frozen, cross_entropy)(trained, xs, ys)
    assert set(grads) == set(trained)
    alone, _ = _each_alone(model, params, xs, ys, list(trained))
    assert max(_relative(grads[n], alone[n]) for n in trained) < 1e-5


@pytest.mark.parametrize("model", [
    LogisticRegression(64, 10),  # its own forward(): the chain of calls is unknown
    nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)),  # running statistics
    nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)),  # already grouped
    nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular")),
    nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)),  # random
    nn.Sequential(nn.MaxPool2d(2, return_indices=True)),
], ids=["own-forward", "batchnorm", "grouped-conv", "circular", "dropout", "indices"])
def test_networks_outside_the_chain_are_left_to_vmap(model: nn.Module) -> None:
    assert chain(model) is None and stacked_forward(model) is None


def test_a_chain_that_does_not_fit_the_layouts_falls_back_to_vmap() -> None:
    """A linear layer on image activations passes the layer check but not the layouts: the
    first step notices, and every step runs through vmap with the same exact gradients."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Linear(8, 3),
                          nn.Flatten(), nn.Linear(2 * 8 * 3, 5))
    assert stacked_forward(model) is not None
    params, xs, ys = _stacked_inputs(model, (1, 8, 8), 5, seed=4)
    step = stacked_gradient(model, {}, cross_entropy)
    alone, _ = _each_alone(model, params, xs, ys, list(params))
    for _ in range(2):
        grads, _ = step(params, xs, ys)
        assert max(_relative(grads[n], alone[n]) for n in params) < 1e-5


def test_the_kernel_benchmark_runs_and_its_ways_agree() -> None:
    """``benchmarks/stacked_kernels.py`` on a tiny setting: it prints the ratios and the
    grouped kernels end within float rounding of each client trained alone."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "stacked_kernels.py"
    out = subprocess.run([sys.executable, str(script), "--clients", "3", "--steps", "2",
                          "--passes", "1"], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert "grouped / vmap = " in out
    diff = re.search(r"difference of grouped kernels from each client alone: (\S+)", out)
    assert diff and float(diff.group(1)) < 1e-5
