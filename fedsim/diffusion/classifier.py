"""A small digit classifier on 8x8 digits in [-1, 1]: the reward model of DNO's classifier reward
(a weight-free stand-in for the learned rewards of DNO, arXiv 2405.18881) and the sample-quality
proxy (share of samples it labels with high confidence).
"""

from __future__ import annotations

import torch
from torch import nn


class DigitClassifier(nn.Module):
    """MLP over the flattened image -> logits over 10 digits."""

    def __init__(self, pixels: int = 64, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 300,
    batch_size: int = 128,
    lr: float = 3e-3,
    noise: float = 0.1,
    seed: int = 0,
) -> DigitClassifier:
    """Adam on cross-entropy with small Gaussian input noise (robustness to imperfect samples)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitClassifier(pixels=x[0].numel())
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        xb = x[idx] + noise * torch.randn(x[idx].shape, generator=g)
        loss = nn.functional.cross_entropy(clf(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(False)
    return clf


@torch.no_grad()
def accuracy(clf: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return float((clf(x).argmax(1) == y).float().mean())


@torch.no_grad()
def confident_share(clf: nn.Module, x: torch.Tensor, threshold: float = 0.9) -> float:
    """Sample-quality proxy: share of samples whose top class probability is >= threshold."""
    return float((clf(x).softmax(1).amax(1) >= threshold).float().mean())
