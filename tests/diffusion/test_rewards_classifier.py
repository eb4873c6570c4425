"""Weight-free rewards for DNO (arXiv 2405.18881) and the digit classifier."""

from __future__ import annotations

import matplotlib.image as mpimg
import torch

from fedsim.diffusion.classifier import accuracy, confident_share
from fedsim.diffusion.images import save_grid
from fedsim.diffusion.rewards import ClassifierLogProb, brightness, compressibility, quantize4


def test_classifier_trains_in_seconds(classifier, digits):
    x, y = digits
    assert accuracy(classifier, x, y) > 0.95
    assert confident_share(classifier, x) > 0.85
    assert confident_share(classifier, torch.rand(256, 1, 8, 8) * 2 - 1) < 0.5


def test_classifier_log_prob_reward(classifier, digits):
    x, y = digits
    r = ClassifierLogProb(classifier, target=3)(x[:50])
    assert r.shape == (50,) and torch.all(r <= 0)
    assert float(r[y[:50] == 3].mean()) > float(r[y[:50] != 3].mean()) + 2


def test_brightness_is_not_clamped():
    x = torch.full((2, 1, 8, 8), 3.0, requires_grad=True)
    r = brightness(x)
    assert torch.allclose(r, torch.tensor([3.0, 3.0]))
    r.sum().backward()
    assert torch.all(x.grad > 0)


def test_compressibility_prefers_flat_images():
    q = quantize4(torch.tensor([-1.0, -0.99, 0.0, 1.0, 2.0]).view(1, 1, 1, 5))
    assert q.tolist() == [[0, 0, 8, 15, 15]]
    flat = compressibility(-torch.ones(1, 1, 8, 8))
    noisy = compressibility(
        torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    assert float(flat) > float(noisy) + 20
    assert not compressibility(torch.zeros(1, 1, 8, 8, requires_grad=True)).requires_grad


def test_save_grid_png(tmp_path, digits):
    path = save_grid(
        digits[0][:10], tmp_path / "g" / "grid.png", titles=[str(i) for i in range(10)]
    )
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50
