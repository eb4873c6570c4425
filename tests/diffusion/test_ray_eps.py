"""ParaTAA (arXiv 2402.09970) with the window's eps evaluation split across Ray actors."""

from __future__ import annotations

import os

import pytest
import torch

from fedsim.diffusion.parataa import ParaTAAConfig, parataa_sample
from fedsim.diffusion.samplers import sample_noise
from fedsim.diffusion.schedule import sampler_coeffs


@pytest.fixture
def ray_local():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_pool_matches_local_solver(ray_local, ddpm, eps_fn):
    from fedsim.diffusion.ray_eps import RayEpsPool

    n = 30
    coeffs = sampler_coeffs(n, 0.0)
    z = sample_noise(4, (1, 8, 8), n, torch.Generator().manual_seed(0))
    cfg = ParaTAAConfig(order=n, history=3)
    pool = RayEpsPool(ddpm, num_workers=2)
    try:
        remote = parataa_sample(pool, coeffs, z, cfg)
    finally:
        pool.shutdown()
    local = parataa_sample(eps_fn, coeffs, z, cfg)
    assert pool.calls == remote.iterations
    assert remote.iterations == local.iterations
    assert float((remote.samples - local.samples).abs().max()) < 1e-4
