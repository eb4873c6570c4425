"""Schedule coefficients and pure sampler steps (the recursion of DNO, arXiv 2405.18881, Sec. 3)."""

from __future__ import annotations

import pytest
import torch

from fedsim.diffusion.samplers import sample_noise, sequential_sample, step, xi_of
from fedsim.diffusion.schedule import alphas_cumprod, linear_betas, sampler_coeffs


def test_linear_schedule():
    betas = linear_betas()
    assert betas.shape == (1000,) and betas[0] == pytest.approx(1e-4) and betas[-1] == 0.02
    ab = alphas_cumprod(betas)
    assert torch.all(ab[1:] < ab[:-1])
    assert float(ab[-1]) == pytest.approx(4.04e-5, rel=0.02)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_coefficients_match_the_formulas(eta):
    n = 50
    c = sampler_coeffs(n, eta)
    assert c.num_steps == n and c.abar[0] == 1.0
    assert c.timesteps[n] == 999 and c.timesteps[1] == 999 // n
    for t in (1, 2, 25, n):
        ab, abp = c.abar[t], c.abar[t - 1]
        a = torch.sqrt(abp / ab)
        cc = eta * torch.sqrt((1 - abp) / (1 - ab)) * torch.sqrt(1 - ab / abp)
        if t == 1:
            cc = 0.0 * cc
        b = torch.sqrt(1 - abp - cc**2) - a * torch.sqrt(1 - ab)
        assert float(c.a[t]) == pytest.approx(float(a), rel=1e-12)
        assert float(c.b[t]) == pytest.approx(float(b), rel=1e-12, abs=1e-15)
        assert float(c.c[t]) == pytest.approx(float(cc), rel=1e-12, abs=1e-15)
    assert c.c[1] == 0.0  # no noise at the last step
    # prod a_t = 1 / sqrt(abar_N): an error's amplification to x_0 (parataa.py), ~158 here
    assert float(torch.prod(c.a[1:])) == pytest.approx(float(1 / c.abar[n].sqrt()), rel=1e-9)
    assert 150 < float(torch.prod(c.a[1:])) < 165
    assert c.stochastic == (eta > 0)


def test_sigma_ddpm_is_the_eta1_noise():
    c1 = sampler_coeffs(40, 1.0)
    assert torch.allclose(sampler_coeffs(40, 0.0).sigma_ddpm, c1.c)
    assert torch.allclose(c1.sigma_ddpm, c1.c)


def test_ddim_step_is_x0_prediction_form():
    c = sampler_coeffs(20, 0.0)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    t = 7
    ab, abp = float(c.abar[t]), float(c.abar[t - 1])
    x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
    expected = abp**0.5 * x0 + (1 - abp) ** 0.5 * eps
    assert torch.allclose(step(c, t, x, eps, torch.zeros_like(x)), expected, atol=1e-5)


def test_step_is_pure():
    c = sampler_coeffs(10, 1.0)
    x, eps, xi = torch.ones(2, 4), torch.ones(2, 4), torch.ones(2, 4)
    before = [v.clone() for v in (x, eps, xi)]
    out1, out2 = step(c, 5, x, eps, xi), step(c, 5, x, eps, xi)
    assert torch.equal(out1, out2)
    assert all(torch.equal(u, v) for u, v in zip(before, (x, eps, xi), strict=True))


def test_noise_layout_and_sequential_sampler():
    n = 6
    z = sample_noise(2, (1, 8, 8), n, torch.Generator().manual_seed(0))
    assert z.shape == (2, n + 1, 1, 8, 8)
    assert torch.equal(xi_of(z, n), z[:, 1]) and torch.equal(xi_of(z, 1), z[:, n])

    def eps_fn(x, tau):
        assert tau.dtype == torch.long and tau.shape == (x.shape[0],)
        return 0.1 * x

    ddim, ddpm = sampler_coeffs(n, 0.0), sampler_coeffs(n, 1.0)
    traj = sequential_sample(eps_fn, ddim, z, return_trajectory=True)
    assert traj.shape == (n + 1, 2, 1, 8, 8) and torch.equal(traj[n], z[:, 0])
    assert torch.equal(traj[0], sequential_sample(eps_fn, ddim, z))
    # DDIM ignores the xi's, DDPM does not (except xi_1)
    z2 = z.clone()
    z2[:, 1:] += 1.0
    assert torch.equal(sequential_sample(eps_fn, ddim, z2), traj[0])
    assert not torch.allclose(
        sequential_sample(eps_fn, ddpm, z2), sequential_sample(eps_fn, ddpm, z)
    )
    z3 = z.clone()
    z3[:, n] += 1.0  # xi_1 is never used
    assert torch.equal(sequential_sample(eps_fn, ddpm, z3), sequential_sample(eps_fn, ddpm, z))
    with pytest.raises(ValueError):
        sequential_sample(eps_fn, sampler_coeffs(n + 1, 0.0), z)
