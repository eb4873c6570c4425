"""Noise schedule and DDIM sub-grid coefficients, precomputed once (diffusers style).

The sampler recursion of DNO (arXiv 2405.18881, Sec. 3) and the equations of ParaTAA
(arXiv 2402.09970, Eq. 2) share the coefficients

    x_{t-1} = a_t x_t + b_t eps(x_t, tau_t) + c_t xi_t,          t = N, ..., 1
    a_t = sqrt(abar_{t-1} / abar_t)
    c_t = eta * sqrt((1 - abar_{t-1}) / (1 - abar_t)) * sqrt(1 - abar_t / abar_{t-1})
    b_t = sqrt(1 - abar_{t-1} - c_t^2) - a_t sqrt(1 - abar_t)

on an N-step sub-grid tau_1 < ... < tau_N of the T training steps, with abar_0 = 1 (the clean
sample), so c_1 = 0 (no noise is injected at the last step). eta = 0 is DDIM, eta = 1 DDPM-like.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def linear_betas(num_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
    """DDPM's linear beta schedule (Ho et al. 2020), float64."""
    return torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """abar_tau = prod_{s <= tau} (1 - beta_s), float64."""
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass(frozen=True)
class SamplerCoeffs:
    """Coefficients of an N-step DDIM(eta) sampler, all float64, indexed by sub-grid step t.

    Index t runs over 0..N (length N + 1). ``a[t], b[t], c[t]`` define equation t (t >= 1; index 0
    is unused and 0). ``abar[t]`` is abar of state x_t (abar[0] = 1). ``timesteps[t]`` is the
    training timestep fed to the network at state x_t (timesteps[0] = -1, never used).
    ``sigma_ddpm[t]`` is the eta = 1 posterior std of step t, used by ParaTAA's stopping rule.
    """

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    abar: torch.Tensor
    timesteps: torch.Tensor
    sigma_ddpm: torch.Tensor
    eta: float

    @property
    def num_steps(self) -> int:
        return int(self.a.shape[0]) - 1

    @property
    def stochastic(self) -> bool:
        """True when some injected noise xi_t enters the sampler (c_t != 0)."""
        return bool((self.c != 0).any())


def _c(eta: float, ab_prev: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    return eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)


def sampler_coeffs(
    num_steps: int,
    eta: float = 0.0,
    num_train_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> SamplerCoeffs:
    """Coefficients for an N-step DDIM(eta) sampler on the linear schedule.

    The sub-grid uses "trailing" spacing, tau_t = t * T / N - 1, so the first state sits at the
    last training step (abar ~ 4e-5) and x_T ~ N(0, I) is the right start.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {num_steps}")
    ab_train = alphas_cumprod(linear_betas(num_train_steps, beta_start, beta_end))
    tau = (
        torch.round(
            torch.arange(1, num_steps + 1, dtype=torch.float64) * num_train_steps / num_steps
        ).long()
        - 1
    )
    abar = torch.cat([torch.ones(1, dtype=torch.float64), ab_train[tau]])
    ab, ab_prev = abar[1:], abar[:-1]
    a = torch.sqrt(ab_prev / ab)
    c = _c(eta, ab_prev, ab)
    c[0] = 0.0  # last step (t = 1): no noise, whatever eta
    b = torch.sqrt(torch.clamp(1 - ab_prev - c**2, min=0.0)) - a * torch.sqrt(1 - ab)
    sigma = _c(1.0, ab_prev, ab)
    sigma[0] = 0.0
    zero = torch.zeros(1, dtype=torch.float64)
    return SamplerCoeffs(
        a=torch.cat([zero, a]),
        b=torch.cat([zero, b]),
        c=torch.cat([zero, c]),
        abar=abar,
        timesteps=torch.cat([torch.full((1,), -1, dtype=torch.long), tau]),
        sigma_ddpm=torch.cat([zero, sigma]),
        eta=float(eta),
    )
