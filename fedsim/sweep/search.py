"""Sampled settings for ``--search KEY=DIST:LOW:HIGH``, drawn from Ray Tune's search spaces.

The samples are drawn once, up front, with a seeded generator and stored in the sweep's
manifest, so a resumed sweep runs the same settings and every seed of a sample shares them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsim.config.errors import ConfigError

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


def parse_search(text: str) -> tuple[str, Any]:
    """``KEY=DIST:ARGS`` as (key, Tune domain): uniform:LOW:HIGH, loguniform:LOW:HIGH,
    randint:LOW:HIGH (HIGH excluded) or choice:A:B:..."""
    from ray import tune

    if "=" not in text:
        raise ConfigError("--search", text, "KEY=DIST:ARGS, e.g. train.lr=loguniform:1e-3:1")
    key, spec = (part.strip() for part in text.split("=", 1))
    dist, *args = spec.split(":")
    if dist not in DISTRIBUTIONS:
        raise ConfigError("--search", text, "a distribution among " + ", ".join(DISTRIBUTIONS))
    if dist == "choice":
        if not args:
            raise ConfigError("--search", text, "choice:A:B:... with at least one value")
        return key, tune.choice(args)
    if len(args) != 2:
        raise ConfigError("--search", text, f"{dist}:LOW:HIGH")
    try:
        low, high = (int(a) if dist == "randint" else float(a) for a in args)
    except ValueError:
        raise ConfigError("--search", text, f"{dist}:LOW:HIGH with numbers") from None
    if not low < high or (dist == "loguniform" and low <= 0):
        raise ConfigError("--search", text, "LOW < HIGH (and LOW > 0 for loguniform)")
    domain = {"uniform": tune.uniform, "loguniform": tune.loguniform,
              "randint": tune.randint}[dist]
    return key, domain(low, high)


def sample_settings(specs: list[str], samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` settings, each one value per ``--search`` key (reproducible for ``seed``)."""
    domains = [parse_search(text) for text in specs]
    rng = np.random.default_rng(seed)
    drawn: list[dict[str, Any]] = [{} for _ in range(samples)]
    for key, domain in domains:
        values = domain.sample(size=samples, random_state=rng)
        for setting, value in zip(drawn, values, strict=True):
            setting[key] = value.item() if hasattr(value, "item") else value
    return drawn
