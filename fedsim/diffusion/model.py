"""A small epsilon-predicting network for DDPM (Ho et al. 2020) on small images.

An MLP with residual blocks over the flattened image, conditioned on a sinusoidal embedding of
the training timestep (Vaswani et al. 2017 / DDPM). Image size and width are configurable, so the
same class serves the 8x8 digits and 28x28 inputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (shape (B,)) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :].to(t.device)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


@dataclass(frozen=True)
class EpsMLPConfig:
    """Shape and width of :class:`EpsMLP`."""

    channels: int = 1
    height: int = 8
    width: int = 8
    hidden: int = 256
    depth: int = 3
    time_dim: int = 64


class _Block(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.temb = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        y = self.fc1(nn.functional.silu(self.norm(h))) + self.temb(temb)
        return h + self.fc2(nn.functional.silu(y))


class EpsMLP(nn.Module):
    """eps_theta(x_tau, tau): (B, C, H, W) images and (B,) integer timesteps -> predicted noise."""

    def __init__(self, config: EpsMLPConfig | None = None) -> None:
        super().__init__()
        self.config = config or EpsMLPConfig()
        c = self.config
        d = c.channels * c.height * c.width
        self.time_mlp = nn.Sequential(
            nn.Linear(c.time_dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)
        )
        self.inp = nn.Linear(d, c.hidden)
        self.blocks = nn.ModuleList(_Block(c.hidden) for _ in range(c.depth))
        self.out = nn.Sequential(nn.LayerNorm(c.hidden), nn.SiLU(), nn.Linear(c.hidden, d))
        # learned, time-gated skip from the input: at high noise eps ~ x_tau, which an MLP
        # otherwise has to learn through its bottleneck (cf. EDM's c_skip, Karras et al. 2022)
        self.skip_gate = nn.Linear(c.hidden, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = nn.functional.silu(self.time_mlp(timestep_embedding(t, self.config.time_dim)))
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, temb)
        gate = torch.sigmoid(self.skip_gate(temb)).view(-1, *([1] * (x.dim() - 1)))
        return self.out(h).view_as(x) + gate * x

    def config_dict(self) -> dict:
        """Plain-dict config, to rebuild a replica elsewhere (e.g. in a Ray actor)."""
        return asdict(self.config)


def default_eps_mlp(input_shape: tuple[int, int, int]) -> EpsMLP:
    """``task.model = "eps-mlp"``: the eps-MLP with default ``[diffusion]`` sizes for images of
    ``input_shape`` (the diffusion and DNO task kinds build theirs from ``[diffusion]``)."""
    c, h, w = input_shape
    return EpsMLP(EpsMLPConfig(channels=c, height=h, width=w))
