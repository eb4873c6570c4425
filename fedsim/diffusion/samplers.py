"""Pure DDIM/DDPM sampler steps and the sequential sampler (the oracle for ParaTAA and DNO).

A step is a pure function of precomputed coefficients (see :mod:`fedsim.diffusion.schedule`):

    x_{t-1} = a_t x_t + b_t eps_theta(x_t, tau_t) + c_t xi_t     (DNO arXiv 2405.18881, Sec. 3;
                                                                 ParaTAA arXiv 2402.09970, Eq. 2)

The noise vector of a batch of B samples is one tensor ``z`` of shape (B, N + 1, *image) holding
(x_T, xi_T, ..., xi_1): ``z[:, 0]`` is x_T and ``z[:, N + 1 - t]`` is xi_t. With eta = 0 only x_T
matters; xi_1 is never used (c_1 = 0). The sampler is the deterministic map x_0 = M_theta(z).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedsim.diffusion.schedule import SamplerCoeffs

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""eps_fn(x_batch (M, *image), tau_batch (M,) long) -> eps_batch (M, *image)."""


def model_eps_fn(model: torch.nn.Module) -> EpsFn:
    """Wrap an eps-network as an :data:`EpsFn` that casts inputs to the model's dtype."""
    dtype = next(model.parameters()).dtype

    def eps_fn(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return model(x.to(dtype), tau).to(x.dtype)

    return eps_fn


def step(
    coeffs: SamplerCoeffs, t: int, x_t: torch.Tensor, eps: torch.Tensor, xi: torch.Tensor
) -> torch.Tensor:
    """One sampler step x_t -> x_{t-1} (pure: no state, no randomness)."""
    a, b, c = (float(v[t]) for v in (coeffs.a, coeffs.b, coeffs.c))
    out = a * x_t + b * eps
    return out + c * xi if c != 0.0 else out


def sample_noise(
    batch: int,
    shape: tuple[int, ...],
    num_steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw z = (x_T, xi_T, ..., xi_1) ~ N(0, I), shape (batch, N + 1, *shape)."""
    return torch.randn((batch, num_steps + 1, *shape), generator=generator, dtype=dtype)


def xi_of(z: torch.Tensor, t: int) -> torch.Tensor:
    """The injected noise xi_t of step t from the noise vector ``z``."""
    return z[:, z.shape[1] - t]


def sequential_sample(
    eps_fn: EpsFn, coeffs: SamplerCoeffs, z: torch.Tensor, return_trajectory: bool = False
):
    """Run the N sampler steps in order: x_0 = M_theta(z). Differentiable if ``eps_fn`` is.

    Returns x_0 (B, *image), or the trajectory (N + 1, B, *image) with ``traj[t] = x_t`` when
    ``return_trajectory``.
    """
    n = coeffs.num_steps
    if z.shape[1] != n + 1:
        raise ValueError(f"z has {z.shape[1]} noise vectors, the sampler needs {n + 1}")
    x = z[:, 0]
    traj = [x]
    for t in range(n, 0, -1):
        tau = torch.full((x.shape[0],), int(coeffs.timesteps[t]), dtype=torch.long)
        x = step(coeffs, t, x, eps_fn(x, tau), xi_of(z, t))
        traj.append(x)
    if return_trajectory:
        return torch.stack(traj[::-1])
    return x
