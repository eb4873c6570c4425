"""scikit-learn's bundled 8x8 handwritten digits (offline), as images in [-1, 1]."""

from __future__ import annotations

import functools

import torch
from sklearn.datasets import load_digits


@functools.lru_cache(maxsize=4)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return x, torch.tensor(d.target, dtype=torch.long)


def load_digit_images(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits (1797, 1, size, size) float32 in [-1, 1] and labels (bilinear if size != 8)."""
    x, y = _digits()
    if size != 8:
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False
        ).clamp(-1, 1)
    return x.clone(), y.clone()
