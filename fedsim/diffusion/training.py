"""DDPM training (Ho et al. 2020, Algorithm 1): the denoising loss and a small central loop.

``ddpm_loss(model, x0, generator)`` is a plain function of (model, batch, generator), so a
federated client can call it for its E local steps with any optimiser.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from fedsim.diffusion.schedule import alphas_cumprod, linear_betas


@functools.lru_cache(maxsize=4)
def _abar(num_train_steps: int) -> torch.Tensor:
    return alphas_cumprod(linear_betas(num_train_steps)).float()


def ddpm_loss(
    model: nn.Module,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    num_train_steps: int = 1000,
) -> torch.Tensor:
    """E_{tau, eps} || eps - eps_theta(sqrt(abar) x0 + sqrt(1 - abar) eps, tau) ||^2 (mean).

    tau and eps are drawn on the CPU (the same draws on every device) and moved to x0's."""
    b = x0.shape[0]
    tau = torch.randint(0, num_train_steps, (b,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    ab = _abar(num_train_steps).to(x0.dtype)[tau].view(b, *([1] * (x0.dim() - 1)))
    tau, ab = tau.to(x0.device), ab.to(x0.device)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return nn.functional.mse_loss(model(x_t, tau), eps)


def train_ddpm(
    model: nn.Module,
    data: torch.Tensor,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    ema_decay: float = 0.99,
) -> list[float]:
    """Adam on :func:`ddpm_loss` with cosine learning-rate decay and an EMA of the weights
    (copied into ``model`` at the end; ``ema_decay=0`` disables it). Returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=g)
        loss = ddpm_loss(model, data[idx], g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for e, p in zip(ema, model.parameters(), strict=True):
                e.lerp_(p, 1.0 - ema_decay)
        losses.append(float(loss.detach()))
    if ema_decay > 0:
        with torch.no_grad():
            for e, p in zip(ema, model.parameters(), strict=True):
                p.copy_(e)
    model.eval()
    return losses
