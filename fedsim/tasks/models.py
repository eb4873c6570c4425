"""Model architectures, built by name for a dataset's input shape and class count.

``MODELS`` holds model factories. A factory is any callable returning an ``nn.Module``; it is
called with the keyword arguments it names among ``input_shape`` (C, H, W) and
``num_classes``, so ``logreg(input_shape, num_classes)`` and torchvision's
``resnet18(*, weights=None, progress=True, **kwargs)`` (which takes ``num_classes`` through
``**kwargs``) both work: a factory with ``**kwargs`` gets ``num_classes`` only, one with
neither name gets ``(input_shape, num_classes)`` positionally.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fedsim.registry import Registry

ModelFactory = Callable[..., nn.Module]


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on flattened inputs."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def logreg(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Multinomial logistic regression for inputs of ``input_shape``."""
    return LogisticRegression(_size(input_shape), num_classes)


def mlp(input_shape: tuple[int, int, int], num_classes: int, hidden: int = 200) -> nn.Module:
    """Two-layer perceptron (hidden ReLU layer)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(_size(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def _size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for s in input_shape:
        size *= int(s)
    return size


def digits_cnn(num_classes: int = 10) -> nn.Module:
    """Small CNN for 8x8 digits (38,282 parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )


def fedlion_cnn(num_classes: int = 10) -> nn.Module:
    """FedLion's EMNIST CNN for 28x28 inputs (arXiv 2402.09941; script ``avg_lion_emnist.py``).

    conv(1->16, k8, s2, p3) -> maxpool(2, s1) -> conv(16->32, k4, s2) -> maxpool(2, s1)
    -> fc(512->32) -> fc(32->classes), ReLU activations.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, 8, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(2, stride=1),
        nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(), nn.MaxPool2d(2, stride=1),
        nn.Flatten(), nn.Linear(512, 32), nn.ReLU(), nn.Linear(32, num_classes),
    )


class _BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm (groups = channels / 4)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(c_out // 4, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(c_out // 4, c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.GroupNorm(c_out // 4, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet20GN(nn.Module):
    """ResNet-20 for CIFAR-10, every BatchNorm replaced by GroupNorm (FedLion, arXiv 2402.09941)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.GroupNorm(4, 16),
                                  nn.ReLU())
        layers: list[nn.Module] = []
        c_in = 16
        for c_out, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(_BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def _as_factory(obj: Any) -> ModelFactory:
    if not callable(obj):
        raise TypeError(f"expected a callable returning a torch.nn.Module, got "
                        f"{type(obj).__name__}")
    return obj


MODELS: Registry[ModelFactory] = Registry("model", "fedsim.models", check=_as_factory)


def call_factory(factory: ModelFactory, input_shape: tuple[int, ...],
                 num_classes: int) -> nn.Module:
    """Call a model factory with the arguments it names (see the module docstring)."""
    given = {"input_shape": tuple(input_shape), "num_classes": int(num_classes)}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: positional
        return factory(*given.values())
    named = {k: v for k, v in given.items() if k in params
             and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY}
    if named:
        model = factory(**named)
    elif any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        model = factory(num_classes=given["num_classes"])
    else:
        model = factory(*given.values())
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory {getattr(factory, '__qualname__', factory)!r} returned "
                        f"{type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Instantiate model ``name`` (or ``"package.module:factory"``) for inputs of
    ``input_shape`` (C, H, W) and ``num_classes`` classes."""
    return call_factory(MODELS.get(name), input_shape, num_classes)
