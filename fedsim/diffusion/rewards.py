"""Weight-free rewards for DNO on small images (DNO: Tang et al., arXiv 2405.18881,
Sec. 5). A reward maps images (B, C, H, W) in [-1, 1] to one score per sample (B,);
DNO maximises it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Reward = Callable[[torch.Tensor], torch.Tensor]


class ClassifierLogProb:
    """log p(y = target | x) under a frozen classifier (differentiable)."""

    def __init__(self, classifier: nn.Module, target: int) -> None:
        self.classifier = classifier
        self.target = int(target)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.classifier(x), dim=1)[:, self.target]


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Mean pixel value, deliberately NOT clamped to [-1, 1]: the out-of-distribution reward
    hacking demo (the DNO paper's brightness/darkness rewards)."""
    return x.flatten(1).mean(1)


def quantize4(x: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] -> uint8 levels 0..15 (4 bits), shape (B, pixels)."""
    q = torch.round((x.detach().clamp(-1, 1) + 1) * 7.5).to(torch.uint8)
    return q.flatten(1).cpu().numpy()


def compressibility(x: torch.Tensor) -> torch.Tensor:
    """Negative zlib length (bytes) of the 4-bit quantised image: the 8x8 stand-in for the
    paper's JPEG-size reward. Non-differentiable (returns a detached tensor)."""
    q = quantize4(x)
    sizes = [len(zlib.compress(row.tobytes(), 9)) for row in q]
    return -torch.tensor(sizes, dtype=torch.float32)
