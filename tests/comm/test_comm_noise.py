"""z-distribution noise: variances, density at zero, and the behaviour of sign(v + σξ)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedsim.comm.noise import (
    cdf,
    density_at_zero,
    expected_sign,
    parse_z,
    perturbed_sign,
    sample,
    server_step,
    variance,
)

N = 400_000


@pytest.mark.parametrize(("z", "var"), [(1, 2.0), (2, 1.0), ("inf", 1 / 3)])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_variance_of_named_cases(z: float | str, var: float, backend: str) -> None:
    gen = (np.random.default_rng(1) if backend == "numpy"
           else torch.Generator().manual_seed(1))
    xi = np.asarray(sample(N, z, gen), dtype=np.float64)
    # standard error of the sample variance: sqrt((E ξ^4 - var^2) / n)
    fourth = {1.0: 24.0, 2.0: 3.0, math.inf: 1 / 5}[parse_z(z)]
    se = math.sqrt((fourth - var**2) / N)
    assert abs(xi.var() - var) < 4 * se
    assert abs(xi.mean()) < 4 * math.sqrt(var / N)
    assert variance(z) == pytest.approx(var)


@pytest.mark.parametrize("z", [1.0, 1.5, 2.0, 3.0, 8.0, math.inf])
def test_gamma_construction_matches_the_cdf(z: float) -> None:
    from scipy.stats import kstest

    xi = sample(50_000, z, np.random.default_rng(2))
    assert kstest(xi, lambda t: cdf(t, z)).pvalue > 1e-3
    assert xi.var() == pytest.approx(variance(z), rel=0.05)
    if math.isinf(z):
        assert xi.min() >= -1 and xi.max() <= 1


@pytest.mark.parametrize("z", [1.0, 1.5, 2.0, 3.0, 10.0])
def test_density_at_zero_normalises_the_density(z: float) -> None:
    from scipy.integrate import quad

    mass, _ = quad(lambda x: math.exp(-abs(x) ** z / z), -np.inf, np.inf)
    assert density_at_zero(z) == pytest.approx(1 / mass, rel=1e-7)


def test_named_constants() -> None:
    assert density_at_zero(1) == pytest.approx(0.5)
    assert density_at_zero(2) == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert density_at_zero("inf") == 0.5
    assert density_at_zero(1e6) == pytest.approx(0.5, rel=1e-4)  # continuous as z -> inf
    assert server_step(0.3, "inf", eta_eff=2.0) == pytest.approx(0.6)
    assert server_step(1.0, 2) == pytest.approx(math.sqrt(math.pi / 2))
    with pytest.raises(ValueError, match="z must be >= 1"):
        parse_z(0.5)


@pytest.mark.parametrize("v", [-1.0, -0.7, -0.2, 0.0, 0.05, 0.5, 0.9, 1.0])
def test_uniform_noise_sign_is_unbiased_when_v_within_sigma(v: float) -> None:
    sigma, n = 1.5, 200_000
    vv = v * sigma
    s = perturbed_sign(np.full(n, vv), sigma, "inf", np.random.default_rng(3))
    est = sigma * s.mean()
    se = sigma * max(s.std(), 1e-12) / math.sqrt(n)
    assert abs(est - vv) <= 3 * se + 1e-12
    assert sigma * expected_sign(vv, sigma, "inf") == pytest.approx(vv)


def test_uniform_noise_clips_beyond_sigma() -> None:
    s = perturbed_sign(np.full(10_000, 2.5), 1.0, "inf", np.random.default_rng(4))
    assert np.all(s == 1.0)


def test_gaussian_small_signal_gain_is_sqrt_2_over_pi() -> None:
    sigma, v, n = 1.0, 0.05, 4_000_000
    gen = torch.Generator().manual_seed(5)
    s = perturbed_sign(torch.full((n,), v, dtype=torch.float64), sigma, 2, gen)
    gain = float(sigma * s.mean() / v)
    se = sigma / (v * math.sqrt(n))
    assert abs(gain - math.sqrt(2 / math.pi)) < 3 * se  # 0.798 ± 0.04, excludes 1 and 0.5
    # and exactly, from the CDF: slope 2 p_z(0) / σ at 0
    h = 1e-6
    assert expected_sign(h, 1.0, 2) / h == pytest.approx(math.sqrt(2 / math.pi), rel=1e-6)
    assert expected_sign(h, 1.0, 1) / h == pytest.approx(1.0, rel=1e-5)


def test_reference_values_at_v_point_one() -> None:
    assert float(expected_sign(0.1, 1.0, "inf")) == pytest.approx(0.1)
    assert float(expected_sign(0.1, 1.0, 2)) == pytest.approx(0.0797, abs=5e-4)
    assert float(expected_sign(0.1, 1.0, 1)) == pytest.approx(0.0952, abs=5e-4)


def test_noise_comes_only_from_the_given_generator() -> None:
    np.random.seed(0)
    torch.manual_seed(0)
    before_np, before_torch = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    for z in (1, 1.5, 2, "inf"):
        a = sample(100, z, np.random.default_rng(7))
        b = sample(100, z, np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, sample(100, z, np.random.default_rng(8)))
        ta = sample(100, z, torch.Generator().manual_seed(7))
        tb = sample(100, z, torch.Generator().manual_seed(7))
        assert torch.equal(ta, tb) and ta.dtype == torch.float32
    np.testing.assert_array_equal(np.random.get_state()[1], before_np)
    assert torch.equal(torch.get_rng_state(), before_torch)
    with pytest.raises(TypeError, match="generator"):
        sample(3, 2, None)


def test_sigma_zero_is_plain_sign_with_zero_as_plus_one() -> None:
    v = np.array([-2.0, 0.0, 3.0], np.float32)
    out = perturbed_sign(v, 0.0, 2, np.random.default_rng(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [-1.0, 1.0, 1.0])


def test_torch_perturbed_sign_keeps_type_and_is_reproducible() -> None:
    v = torch.tensor([0.0, -0.3, 0.3, 5.0], dtype=torch.float32)
    plain = perturbed_sign(v, 0.0, 2, torch.Generator().manual_seed(0))
    assert plain.dtype == torch.float32 and plain.tolist() == [1.0, -1.0, 1.0, 1.0]
    for z in (1, 1.5, 2, "inf"):
        a = perturbed_sign(v, 1.0, z, torch.Generator().manual_seed(9))
        b = perturbed_sign(v, 1.0, z, torch.Generator().manual_seed(9))
        assert torch.equal(a, b) and set(a.unique().tolist()) <= {-1.0, 1.0}
