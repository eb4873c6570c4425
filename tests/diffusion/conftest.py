"""Session fixtures for the diffusion tests: a tiny DDPM and a digit classifier on sklearn digits.

The DDPM trains once per session (about 15 s on a loaded 2-core machine) and is cached in pytest's
cache folder keyed by its settings, so later sessions load it in milliseconds. Delete
``.pytest_cache`` (or run with ``--cache-clear``) to retrain; with ``-p no:cacheprovider`` it
trains into a temporary folder every session.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import torch

from fedsim.diffusion.classifier import DigitClassifier, train_classifier
from fedsim.diffusion.data import load_digit_images
from fedsim.diffusion.model import EpsMLP, EpsMLPConfig
from fedsim.diffusion.samplers import model_eps_fn
from fedsim.diffusion.training import train_ddpm

torch.set_num_threads(1)

DDPM_CONFIG = EpsMLPConfig(hidden=128, depth=2)
DDPM_TRAIN = {"steps": 800, "batch_size": 128, "lr": 2e-3, "seed": 0, "ema_decay": 0.99}


@pytest.fixture(scope="session")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return load_digit_images()


@pytest.fixture(scope="session")
def ddpm(request, digits, tmp_path_factory) -> EpsMLP:
    """The tiny trained eps-network (frozen, eval mode)."""
    key = json.dumps({"model": DDPM_CONFIG.__dict__, "train": DDPM_TRAIN, "v": 1}, sort_keys=True)
    name = "ddpm-" + hashlib.sha1(key.encode()).hexdigest()[:12] + ".pt"
    cache = getattr(request.config, "cache", None)  # None under ``-p no:cacheprovider``
    folder = cache.mkdir("fedsim-diffusion") if cache is not None \
        else tmp_path_factory.mktemp("fedsim-diffusion")
    path = folder / name
    torch.manual_seed(0)
    model = EpsMLP(DDPM_CONFIG)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        t0 = time.perf_counter()
        train_ddpm(model, digits[0], **DDPM_TRAIN)
        print(f"\ntrained the tiny DDPM in {time.perf_counter() - t0:.1f} s")
        torch.save(model.state_dict(), path)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def eps_fn(ddpm):
    return model_eps_fn(ddpm)


@pytest.fixture(scope="session")
def classifier(digits) -> DigitClassifier:
    """A digit classifier trained in about 2 s."""
    return train_classifier(*digits, steps=300, seed=0)
