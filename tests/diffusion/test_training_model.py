"""The eps-network, the DDPM loss and the central training loop."""

from __future__ import annotations

import torch

from fedsim.diffusion.data import load_digit_images
from fedsim.diffusion.model import EpsMLP, EpsMLPConfig, timestep_embedding
from fedsim.diffusion.samplers import model_eps_fn, sample_noise, sequential_sample
from fedsim.diffusion.schedule import sampler_coeffs
from fedsim.diffusion.training import ddpm_loss, train_ddpm


def test_time_embedding_distinguishes_timesteps():
    e = timestep_embedding(torch.tensor([0, 1, 500, 999]), 64)
    assert e.shape == (4, 64)
    assert torch.cdist(e, e).fill_diagonal_(1.0).min() > 0.1


def test_model_shapes_8x8_and_28x28():
    for size in (8, 28):
        m = EpsMLP(EpsMLPConfig(height=size, width=size, hidden=32, depth=1))
        x = torch.randn(3, 1, size, size)
        assert m(x, torch.tensor([0, 10, 999])).shape == x.shape
    x28, _ = load_digit_images(size=28)
    assert x28.shape == (1797, 1, 28, 28) and x28.min() >= -1 and x28.max() <= 1


def test_ddpm_loss_is_a_function_of_model_batch_generator():
    torch.manual_seed(0)
    m = EpsMLP(EpsMLPConfig(hidden=32, depth=1))
    x0 = load_digit_images()[0][:16]
    l1 = ddpm_loss(m, x0, torch.Generator().manual_seed(3))
    l2 = ddpm_loss(m, x0, torch.Generator().manual_seed(3))
    assert l1.dim() == 0 and torch.equal(l1, l2)
    l1.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_short_training_lowers_the_loss():
    torch.manual_seed(0)
    m = EpsMLP(EpsMLPConfig(hidden=32, depth=1))
    losses = train_ddpm(m, load_digit_images()[0], steps=60, batch_size=64, lr=3e-3, ema_decay=0)
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_trained_fixture_samples_digits(ddpm, classifier):
    """The session DDPM is usable: samples mostly in range and often recognised as digits."""
    coeffs = sampler_coeffs(50, 0.0)
    z = sample_noise(64, (1, 8, 8), 50, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = sequential_sample(model_eps_fn(ddpm), coeffs, z)
    assert float((x.abs() <= 1.2).float().mean()) > 0.85
    conf = classifier(x).softmax(1).amax(1)
    assert float((conf > 0.9).float().mean()) > 0.3
