"""The z-distribution noise of z-SignFedAvg (Tang et al., "z-SignFedAvg: A Unified Stochastic
Sign-based Compression for Federated Learning", AAAI 2024, arXiv:2302.02589).

Density ``p_z(x) ∝ exp(-|x|^z / z)`` for a shape ``z ∈ [1, ∞]``: z = 1 is Laplace(0, 1),
z = 2 the standard Gaussian, z = ∞ Uniform[-1, 1]. Sampling uses ``ξ = s·(z·G)^{1/z}`` with
``G ~ Gamma(1/z, 1)`` and ``s`` a fair random sign (z = ∞ draws U(-1, 1) directly).

Constants (``Γ`` the gamma function):

- normaliser ``∫ exp(-|x|^z/z) dx = 2·z^{1/z}·Γ(1 + 1/z)``, so
  ``p_z(0) = 1 / (2·z^{1/z}·Γ(1 + 1/z))``: 1/2 (Laplace), 1/√(2π) (Gaussian), 1/2 (uniform);
- ``Var ξ = z^{2/z}·Γ(3/z) / Γ(1/z)``: 2 (Laplace), 1 (Gaussian), 1/3 (uniform);
- ``E[sign(v + σξ)] = 2·F_z(v/σ) − 1`` with ``F_z(t) = 1/2 + sign(t)/2·P(1/z, |t|^z/z)``
  (``P`` the regularised lower incomplete gamma); near 0 its slope is ``2·p_z(0)/σ``;
- the recommended server step ``η = σ·η_eff / (2·p_z(0))`` makes ``E[η·sign(v + σξ)] ≈ η_eff·v``
  near 0, exactly for z = ∞ when ``|v| <= σ``.

Noise must come from a client-local generator (DESIGN.md, "Reproducible"): every sampler takes
an explicit ``numpy.random.Generator`` or ``torch.Generator`` and never touches global state.
The noise hides a client's update from the server only if the generator's seed is secret:
``clients.noise_source`` decides (a node secret in deployment, the experiment seed in
simulation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ZShape = float | int | str


def parse_z(z: ZShape) -> float:
    """``z`` as a float in ``[1, inf]`` (accepts ``"inf"``/``"uniform"``, ``"laplace"``,
    ``"gaussian"``)."""
    names = {"inf": math.inf, "uniform": math.inf, "laplace": 1.0, "gaussian": 2.0,
             "normal": 2.0}
    value = names[z.lower()] if isinstance(z, str) and z.lower() in names else float(z)
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"z must be >= 1 (or inf), got {z!r}")
    return value


def density_at_zero(z: ZShape) -> float:
    """``p_z(0) = 1 / (2·z^{1/z}·Γ(1 + 1/z))``; 1/2 for z = 1 and z = ∞, 1/√(2π) for z = 2."""
    zf = parse_z(z)
    if math.isinf(zf):
        return 0.5
    return 1.0 / (2.0 * zf ** (1.0 / zf) * math.gamma(1.0 + 1.0 / zf))


def variance(z: ZShape) -> float:
    """``Var ξ = z^{2/z}·Γ(3/z)/Γ(1/z)``: 2 (z=1), 1 (z=2), 1/3 (z=∞)."""
    zf = parse_z(z)
    if math.isinf(zf):
        return 1.0 / 3.0
    return zf ** (2.0 / zf) * math.gamma(3.0 / zf) / math.gamma(1.0 / zf)


def cdf(t: np.ndarray | float, z: ZShape) -> np.ndarray:
    """``F_z(t) = 1/2 + sign(t)/2 · P(1/z, |t|^z / z)`` (uniform: ``clip((t+1)/2, 0, 1)``)."""
    zf = parse_z(z)
    t = np.asarray(t, dtype=np.float64)
    if math.isinf(zf):
        return np.clip((t + 1.0) / 2.0, 0.0, 1.0)
    if zf == 1.0:
        return np.where(t < 0, 0.5 * np.exp(t), 1.0 - 0.5 * np.exp(-t))
    from scipy.special import gammainc  # scipy ships with scikit-learn

    return 0.5 + 0.5 * np.sign(t) * gammainc(1.0 / zf, np.abs(t) ** zf / zf)


def expected_sign(v: np.ndarray | float, sigma: float, z: ZShape) -> np.ndarray:
    """``E[sign(v + σξ)] = 2·F_z(v/σ) − 1`` (σ > 0)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return 2.0 * cdf(np.asarray(v, dtype=np.float64) / sigma, z) - 1.0


def server_step(sigma: float, z: ZShape, eta_eff: float = 1.0) -> float:
    """``η = σ·η_eff / (2·p_z(0))``: the server step that makes averaged noisy signs act like
    FedAvg with server learning rate ``η_eff`` (fedsim's parametrisation of z-SignFedAvg)."""
    return sigma * eta_eff / (2.0 * density_at_zero(z))


def _sample_numpy(shape: tuple[int, ...], zf: float, rng: np.random.Generator) -> np.ndarray:
    if math.isinf(zf):
        return rng.uniform(-1.0, 1.0, size=shape)
    if zf == 1.0:
        return rng.laplace(0.0, 1.0, size=shape)
    if zf == 2.0:
        return rng.standard_normal(size=shape)
    g = rng.gamma(1.0 / zf, 1.0, size=shape)
    s = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
    return s * (zf * g) ** (1.0 / zf)


def _sample_torch(shape: tuple[int, ...], zf: float, gen: Any, dtype: Any) -> Any:
    import torch

    if math.isinf(zf):
        return torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    if zf == 2.0:
        return torch.randn(shape, generator=gen, dtype=dtype)
    if zf == 1.0:  # inverse CDF of Laplace(0, 1) from U(-1/2, 1/2)
        u = torch.rand(shape, generator=gen, dtype=torch.float64) - 0.5
        return (-torch.sign(u) * torch.log1p(-2 * u.abs())).to(dtype)
    # torch has no seeded Gamma sampler: draw a seed from the client's torch generator and
    # sample with NumPy, so the stream is still determined by (and only by) ``gen``.
    seed = int(torch.randint(0, 2**62, (1,), generator=gen).item())
    arr = _sample_numpy(shape, zf, np.random.default_rng(seed))
    return torch.from_numpy(arr).to(dtype)


def sample(shape: int | tuple[int, ...], z: ZShape, generator: Any,
           dtype: Any = None) -> Any:
    """``shape`` i.i.d. draws of ``ξ ~ p_z`` from ``generator``.

    ``generator`` is a ``numpy.random.Generator`` (returns ``np.ndarray``, float64 unless
    ``dtype``) or a ``torch.Generator`` (returns a CPU ``torch.Tensor``, float32 unless
    ``dtype``). There is deliberately no default generator: noise must be client-local.
    """
    zf = parse_z(z)
    shp = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if isinstance(generator, np.random.Generator):
        out = _sample_numpy(shp, zf, generator)
        return out if dtype is None else out.astype(dtype)
    if type(generator).__module__.startswith("torch"):
        import torch

        return _sample_torch(shp, zf, generator, torch.float32 if dtype is None else dtype)
    raise TypeError(f"generator must be numpy.random.Generator or torch.Generator, "
                    f"got {type(generator).__name__}")


def perturbed_sign(v: Any, sigma: float, z: ZShape, generator: Any) -> Any:
    """``sign(v + σ·ξ)`` with ``ξ ~ p_z`` (values ±1, sign(0) = +1 as in
    :mod:`fedsim.comm.sign_codec`); ``σ = 0`` gives plain sign. Same type as ``v``."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if isinstance(generator, np.random.Generator):
        x = np.asarray(v, dtype=np.float64)
        if sigma > 0:
            x = x + sigma * sample(x.shape, z, generator)
        kind = np.asarray(v).dtype
        return np.where(x >= 0, 1.0, -1.0).astype(kind if kind.kind == "f" else np.float32)
    import torch

    x = v
    if sigma > 0:
        x = v + sigma * sample(tuple(v.shape), z, generator, dtype=v.dtype).to(v.device)
    return torch.where(x >= 0, 1.0, -1.0).to(v.dtype)
