"""DNO: Direct Noise Optimization (Tang et al., "Inference-Time Alignment of Diffusion Models
with Direct Noise Optimization", ICML 2025, arXiv 2405.18881; official code:
TZW1998/Direct-Noise-Optimization).

Optimise the injected noise z = (x_T, xi_T, ..., xi_1) of a frozen sampler x_0 = M_theta(z):

    max_z  r(M_theta(z)) - gamma_reg * P(z)                                   (Sec. 3, Eq. 3)

with AdamW (weight decay 0.01, the code's default) and the global gradient norm clipped to 1.0
every step. P(z) is the probability regulariser of Sec. 4 (Eq. 8-10) exactly as in the official
code; non-differentiable rewards use the Hybrid-2 estimator (Sec. 3.3) or pure zeroth order.

The per-step pieces are separate pure functions so that a federated DNO can run the reward
feedback (:func:`reward_grad`, :func:`hybrid2_grad`, :func:`zo_grad`) on clients that hold private
rewards and the regulariser (:func:`prob_reg_grad`) on the server that holds z.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fedsim.diffusion.rewards import Reward
from fedsim.diffusion.samplers import EpsFn, sequential_sample
from fedsim.diffusion.schedule import SamplerCoeffs

Sampler = Callable[[torch.Tensor], torch.Tensor]
"""z (B, N + 1, *image) -> x_0 (B, *image)."""

LOG2 = math.log(2.0)


def clip_norm(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``grad`` scaled down to global L2 norm ``max_norm`` if longer (the official code clips
    the whole noise gradient every step)."""
    norm = grad.norm()
    return grad * (max_norm / (norm + 1e-12)) if norm > max_norm else grad


def make_sampler(eps_fn: EpsFn, coeffs: SamplerCoeffs) -> Sampler:
    """The sequential sampler M_theta as a function of z (differentiable through eps_fn)."""
    return lambda z: sequential_sample(eps_fn, coeffs, z)


def regularised_noise(z: torch.Tensor, coeffs: SamplerCoeffs) -> torch.Tensor:
    """The vectors P(z) covers, flattened per sample (B, D): all noise vectors (including the
    unused xi_1) when eta > 0, only x_T when eta = 0 (official code)."""
    v = z if coeffs.stochastic else z[:, :1]
    return v.reshape(z.shape[0], -1)


def _block_log_probs(v: torch.Tensor, k: int) -> torch.Tensor:
    """log p_mu + log p_Sigma of the blocking of v (..., D) into n = D // k blocks of size k."""
    n = v.shape[-1] // k
    blocks = v[..., : n * k].reshape(*v.shape[:-1], n, k)
    mu = blocks.mean(-2)
    log_p_mu = torch.clamp(-n * mu.pow(2).sum(-1) / (2 * k), max=-LOG2)
    cov = torch.einsum("...ni,...nj->...ij", blocks, blocks) / n
    dev = torch.linalg.eigvalsh(cov - torch.eye(k, dtype=v.dtype)).abs().amax(-1)
    delta = torch.sqrt(1 + dev) - 1  # ||Sigma - I||_2 = (1 + delta)^2 - 1
    t = torch.clamp(delta - math.sqrt(k / n), min=0.0)
    log_p_cov = torch.clamp(-n * t.pow(2) / 2, max=-LOG2)
    return log_p_mu + log_p_cov


def prob_reg(
    v: torch.Tensor, block: int = 4, n_perm: int = 100, generator: torch.Generator | None = None
) -> torch.Tensor:
    """P(z) of DNO Sec. 4 for flattened noise v (B, D) -> (B,); >= 4 ln 2.

    Mean term: log p_mu = min(-n ||mu_hat||^2 / (2k), -log 2) (Gaussian tail bound); covariance
    term: with ||Sigma_hat - I||_2 = (1 + delta)^2 - 1 and t = max(0, delta - sqrt(k/n)),
    log p_Sigma = min(-n t^2 / 2, -log 2) (Davidson-Szarek bound). P = -(both terms) for the
    contiguous blocking plus the same averaged over ``n_perm`` random permutations of v.
    """
    seq = _block_log_probs(v, block)
    if n_perm <= 0:
        return -seq
    d = v.shape[-1]
    perms = torch.stack([torch.randperm(d, generator=generator) for _ in range(n_perm)])
    shuffled = v[:, perms]  # (B, n_perm, D)
    return -(seq + _block_log_probs(shuffled, block).mean(-1))


def prob_reg_grad(
    z: torch.Tensor,
    coeffs: SamplerCoeffs,
    block: int = 4,
    n_perm: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P(z) per sample (B,), dP/dz summed over samples) -- the server-side half."""
    zz = z.detach().requires_grad_(True)
    p = prob_reg(regularised_noise(zz, coeffs), block, n_perm, generator)
    (grad,) = torch.autograd.grad(p.sum(), zz)
    return p.detach(), grad


def reward_grad(
    z: torch.Tensor, sampler: Sampler, reward: Reward
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable reward: grad_z of the loss -sum_b r(M(z)_b), by backprop through every
    sampler step. Returns (grad, rewards (B,), x_0)."""
    zz = z.detach().requires_grad_(True)
    x = sampler(zz)
    r = reward(x)
    (grad,) = torch.autograd.grad(-r.sum(), zz)
    return grad, r.detach(), x.detach()


def _perturbed(
    z: torch.Tensor, q: int, mu: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.randn((q, *z.shape), generator=generator, dtype=z.dtype)
    return u, (z.detach()[None] + mu * u).reshape(q * z.shape[0], *z.shape[1:])


@torch.no_grad()
def hybrid2_direction(
    z: torch.Tensor,
    x: torch.Tensor,
    sampler: Sampler,
    reward: Reward,
    q: int = 4,
    mu: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hybrid-2's sample-space estimate: perturb in NOISE space, difference in SAMPLE space.

    g = sum_j (l(x_j) - l(x)) (x_j - x), x_j = M(z + mu u_j), l = -r; normalised per sample by
    ||g|| + 1e-3. Returns (g_hat like x, rewards r(x) (B,)). Only reward VALUES are needed here,
    so this is the part a client with a black-box reward runs.
    """
    bsz = z.shape[0]
    _, zp = _perturbed(z, q, mu, generator)
    xp = sampler(zp).reshape(q, *x.shape)
    r0 = reward(x)
    rp = reward(xp.reshape(q * bsz, *x.shape[1:])).reshape(q, bsz)
    dl = -(rp - r0[None])  # l(x_j) - l(x)
    g = torch.einsum("qb,qb...->b...", dl, xp - x[None])
    norm = g.flatten(1).norm(dim=1).view(bsz, *([1] * (g.dim() - 1)))
    return g / (norm + 1e-3), r0


def hybrid2_grad(
    z: torch.Tensor,
    sampler: Sampler,
    reward: Reward,
    q: int = 4,
    mu: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hybrid-2: grad_z of the surrogate <g_hat, M(z)> (a VJP through the sampler).
    Returns (grad, rewards (B,), x_0)."""
    zz = z.detach().requires_grad_(True)
    x = sampler(zz)
    g_hat, r = hybrid2_direction(z, x.detach(), sampler, reward, q, mu, generator)
    (grad,) = torch.autograd.grad((g_hat * x).sum(), zz)
    return grad, r, x.detach()


@torch.no_grad()
def zo_grad(
    z: torch.Tensor,
    sampler: Sampler,
    reward: Reward,
    q: int = 4,
    mu: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pure zeroth order in z-space: (1/q) sum_j (l(z + mu u_j) - l(z)) / mu * u_j.
    Returns (grad, rewards (B,), x_0)."""
    bsz = z.shape[0]
    x = sampler(z)
    u, zp = _perturbed(z, q, mu, generator)
    r0 = reward(x)
    rp = reward(sampler(zp)).reshape(q, bsz)
    dl = -(rp - r0[None]) / mu
    grad = torch.einsum("qb,qb...->b...", dl, u) / q
    return grad, r0, x


@dataclass(frozen=True)
class DNOConfig:
    """DNO settings (defaults of the official code unless noted)."""

    method: str = "grad"
    """"grad" (differentiable reward), "hybrid2" or "zo" (non-differentiable rewards)."""
    steps: int = 50
    lr: float = 1e-2
    weight_decay: float = 0.01
    clip: float = 1.0
    gamma_reg: float = 0.0
    q: int = 4
    mu: float = 0.01
    block: int = 4
    n_perm: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("grad", "hybrid2", "zo"):
            raise ValueError(f"method must be grad, hybrid2 or zo, got {self.method!r}")


@dataclass
class DNOResult:
    """Optimised noise, final samples and per-step histories (means over the batch)."""

    z: torch.Tensor
    samples: torch.Tensor
    reward: list[float] = field(default_factory=list)
    z_sq: list[float] = field(default_factory=list)
    reg: list[float] = field(default_factory=list)


def feedback_grad(
    method: str,
    z: torch.Tensor,
    sampler: Sampler,
    reward: Reward,
    q: int,
    mu: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient (of the loss -r) of the chosen estimator at z: the client-side half."""
    if method == "grad":
        return reward_grad(z, sampler, reward)
    if method == "hybrid2":
        return hybrid2_grad(z, sampler, reward, q, mu, generator)
    return zo_grad(z, sampler, reward, q, mu, generator)


def optimize_noise(
    sampler: Sampler,
    coeffs: SamplerCoeffs,
    z0: torch.Tensor,
    reward: Reward,
    config: DNOConfig | None = None,
) -> DNOResult:
    """Run DNO from z0: each step, reward feedback + gamma_reg * grad P(z), global clip, AdamW.

    ``reward`` and ``reg`` are measured before each step, ``z_sq`` (mean z^2 of the regularised
    noise) after it; the final samples are M(z) at the end.
    """
    cfg = config or DNOConfig()
    g = torch.Generator().manual_seed(cfg.seed)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([z], lr=cfg.lr, weight_decay=cfg.weight_decay)
    res = DNOResult(z=z0, samples=z0[:, 0])
    for _ in range(cfg.steps):
        grad, r, _ = feedback_grad(cfg.method, z, sampler, reward, cfg.q, cfg.mu, g)
        p, gp = prob_reg_grad(z, coeffs, cfg.block, cfg.n_perm, g)
        if cfg.gamma_reg:
            grad = grad + cfg.gamma_reg * gp
        grad = clip_norm(grad, cfg.clip)
        z.grad = grad
        opt.step()
        res.reward.append(float(r.mean()))
        res.z_sq.append(float(regularised_noise(z.detach(), coeffs).pow(2).mean()))
        res.reg.append(float(p.mean()))
    res.z = z.detach()
    with torch.no_grad():
        res.samples = sampler(res.z)
    return res
