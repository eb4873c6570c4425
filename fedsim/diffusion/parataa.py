"""ParaTAA: parallel sampling of diffusion models as a triangular nonlinear system, solved by
fixed-point iteration with Triangular Anderson Acceleration (Tang et al., "Accelerating Parallel
Sampling of Diffusion Models", ICML 2024, arXiv 2402.09970; code: TZW1998/ParaTAA-Diffusion).

Unknowns x_{N-1}, ..., x_0 (x_N = x_T and every xi_t given); equations (Sec. 3, Eq. 2)

    F_t(x) = x_{t-1} - a_t x_t - d_t(x_t) = 0,   d_t(x_t) = b_t eps(x_t, tau_t) + c_t xi_t,

a triangular system: x_{t-1} depends only on states at steps >= t. Sec. 4 (order-k form) unrolls
the recursion k steps, truncated at the top of the current window (the exact frozen state):

    x_{t-1} = A_{t,k} x_{t+k-1} + sum_{s=t}^{t+k-1} A_{t,s-t} d_s(x_s),  A_{t,j} = prod_{r<t+j} a_r

k = 1 is plain (Jacobi) fixed-point iteration (FP); k = N is the Picard form of ParaDiGMS (FP+).
With P_t = prod_{r<=t} a_r (= 1 / sqrt(abar_t)), A_{t,j} = P_{t+j-1} / P_{t-1}, so the whole
order-k map is one cumulative sum.

Each iteration evaluates eps at every state of the window in ONE batched call, forms the order-k
residual R = G_k(x) - x and applies Triangular Anderson Acceleration (Sec. 5, Alg. 1): with the last
m iterates and residuals (m - 1 differences dX^(j), dR^(j)), for each timestep a separate ridge
least-squares problem over the rows s >= t it depends on,

    gamma_t = argmin_g sum_{s >= t, s in window} ||R_s - sum_j g_j dR_s^(j)||^2 + lambda ||g||^2
    x_t <- x_t + R_t - sum_j gamma_{t,j} (dX_t^(j) + dR_t^(j)).

Safeguard: the noisiest unconverged equation gets the plain update, which makes it exact; so every
iteration freezes at least one more state and the solver never needs more than N iterations.

Early stopping (official code): equation t is converged when the RMS of its FIRST-order residual is
<= max(tol1, tol2 * sigma_t^DDPM). States above the noisiest unconverged equation are frozen and
the window slides towards x_0. On small x-space models (a fedsim finding) an error in
x_{t-1} reaches x_0 amplified by prod a = 1 / sqrt(abar_{t-1}) (158x at the top for the linear
schedule), so by default (``tol_scale="alpha_bar"``) the residual is measured in x_0 scale,
i.e. multiplied by 1 / sqrt(abar_{t-1}). Use ``tol_scale="none"`` for the paper's raw rule.

State is float64 (as in the official code); the network sees float32 through ``eps_fn``.

Documented tolerance (tests/diffusion/test_parataa.py, tiny digits DDPM, 100 steps): with the
defaults (tol 1e-3, x_0-scaled) the solution agrees with sequential sampling to max |dx_0| ~ 1e-2
for data in [-1, 1] (asserted < 3e-2) for DDIM and DDPM; plain FP (k = 1) agrees to round-off.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from fedsim.diffusion.samplers import EpsFn
from fedsim.diffusion.schedule import SamplerCoeffs


@dataclass(frozen=True)
class ParaTAAConfig:
    """Solver settings; defaults are the official code's for SD v1.5 (``parallel_sd.py``)."""

    order: int = 20
    """k of the order-k equations (1 = plain FP; >= N = full Picard / FP+)."""
    window: int = 100
    """Number of equations solved in parallel (one batched eps call of ``window`` states)."""
    history: int = 2
    """m, the number of stored iterates (m - 1 differences); 1 disables TAA."""
    ridge: float = 1e-3
    """lambda of the per-timestep ridge least squares."""
    tol1: float = 1e-3
    tol2: float = 1e-3
    tol_scale: str = "alpha_bar"
    """"alpha_bar": residual of equation t measured in x_0 scale (times 1/sqrt(abar_{t-1}));
    "none": the paper's unscaled rule."""
    max_iters: int | None = None
    """Optional cap (the safeguard already bounds the count by N)."""

    def __post_init__(self) -> None:
        if self.order < 1 or self.window < 1 or self.history < 1:
            raise ValueError("order, window and history must be >= 1")
        if self.ridge < 0 or self.tol1 < 0 or self.tol2 < 0:
            raise ValueError("ridge and tolerances must be >= 0")
        if self.tol_scale not in ("alpha_bar", "none"):
            raise ValueError(f"tol_scale must be 'alpha_bar' or 'none', got {self.tol_scale!r}")


@dataclass
class ParaTAAResult:
    """Solver output: x_0, the trajectory (float64), iterations and per-iteration residuals."""

    samples: torch.Tensor
    trajectory: torch.Tensor
    iterations: int
    residuals: list[float] = field(default_factory=list)
    """Per iteration: max over the window of (scaled first-order residual RMS) / tolerance."""
    nfe: int = 0
    """Total number of single-state network evaluations."""


def equation_tolerance(coeffs: SamplerCoeffs, config: ParaTAAConfig) -> torch.Tensor:
    """Tolerance of equation t (index t = 1..N) on the first-order residual RMS of x_{t-1}."""
    tol = torch.clamp(config.tol2 * coeffs.sigma_ddpm, min=config.tol1)
    if config.tol_scale == "alpha_bar":
        shifted = torch.cat([coeffs.abar[:1], coeffs.abar[:-1]])  # abar_{t-1} at index t
        tol = tol * shifted.sqrt()
    return tol


def _ridge_gammas(
    dr: torch.Tensor, r: torch.Tensor, valid: torch.Tensor, ridge: float
) -> torch.Tensor:
    """Per-timestep ridge LS over the rows s >= t (rows are ordered low t -> high t).

    dr: (rows, B, D, J) residual differences; r: (rows, B, D); valid: (rows, J) bool columns
    usable at each row's timestep. Returns gamma (rows, B, J).
    """
    gram = torch.einsum("sbdi,sbdj->sbij", dr, dr)
    rhs = torch.einsum("sbdi,sbd->sbi", dr, r)
    # suffix sums over rows s >= t (reverse cumulative sum along the row axis)
    gram = gram.flip(0).cumsum(0).flip(0)
    rhs = rhs.flip(0).cumsum(0).flip(0)
    mask = valid[:, None, :].to(gram.dtype)  # (rows, 1, J)
    gram = gram * mask[..., :, None] * mask[..., None, :]
    rhs = rhs * mask
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    # ridge + 1 on masked-out diagonal entries keeps the system regular with gamma_j = 0 there
    reg = ridge * eye + (1 - mask)[..., None] * eye
    # relative jitter so that ridge = 0 with linearly dependent differences stays solvable
    reg = reg + 1e-12 * gram.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None] * eye
    return torch.linalg.solve(gram + reg, rhs.unsqueeze(-1)).squeeze(-1) * mask


def parataa_sample(
    eps_fn: EpsFn,
    coeffs: SamplerCoeffs,
    z: torch.Tensor,
    config: ParaTAAConfig | None = None,
    init_trajectory: torch.Tensor | None = None,
    init_top: int | None = None,
) -> ParaTAAResult:
    """Solve the sampler's triangular system for x_0 = M_theta(z) with ParaTAA.

    z: noise vector (B, N + 1, *image) as in :mod:`fedsim.diffusion.samplers`.
    init_trajectory: optional (N + 1, B, *image) trajectory to start from (e.g. a previous
    solve); every state is then admitted with that value instead of a copy of x_T.
    init_top: with ``init_trajectory``, states x_{init_top}..x_N are taken as already exact and
    frozen; only the lower ``init_top`` steps are re-solved (``parallel_sd_winit.py``).
    """
    cfg = config or ParaTAAConfig()
    n = coeffs.num_steps
    bsz, shape = z.shape[0], tuple(z.shape[2:])
    if z.shape[1] != n + 1:
        raise ValueError(f"z has {z.shape[1]} noise vectors, the sampler needs {n + 1}")
    f64 = torch.float64
    a, b, c = coeffs.a, coeffs.b, coeffs.c
    pcum = torch.cumprod(torch.cat([torch.ones(1, dtype=f64), a[1:]]), 0)  # P_t
    tol = equation_tolerance(coeffs, cfg)
    scale = 1.0 / torch.sqrt(torch.cat([coeffs.abar[:1], coeffs.abar[:-1]]))
    if cfg.tol_scale == "none":
        scale = torch.ones_like(scale)

    zf = z.detach().to(f64).reshape(bsz, n + 1, -1)
    dim = zf.shape[-1]
    xi = torch.zeros(n + 1, bsz, dim, dtype=f64)
    xi[1:] = zf[:, 1:].flip(1).transpose(0, 1)  # xi[t] = z[:, N + 1 - t]
    x = torch.empty(n + 1, bsz, dim, dtype=f64)
    x[n] = zf[:, 0]
    top = n
    admitted = n  # lowest state index holding a meaningful value
    if init_trajectory is not None:
        x[:] = init_trajectory.detach().to(f64).reshape(n + 1, bsz, dim)
        x[n] = zf[:, 0]
        admitted = 0
        if init_top is not None:
            if not 0 <= init_top <= n:
                raise ValueError(f"init_top must be in [0, {n}]")
            top = init_top

    m1 = cfg.history - 1
    hist: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=cfg.history)
    count = torch.zeros(n + 1, dtype=torch.long)  # iterates of each unknown state in the history
    residuals: list[float] = []
    iters = nfe = 0
    max_iters = cfg.max_iters if cfg.max_iters is not None else n

    while top > 0 and iters < max_iters:
        lo = max(1, top - cfg.window + 1)  # equations lo..top, unknowns x_{lo-1}..x_{top-1}
        if lo - 1 < admitted:  # admit new states: copy of the last known state
            x[lo - 1 : admitted] = x[admitted]
            admitted = lo - 1
        ts = torch.arange(lo, top + 1)
        states = x[lo : top + 1]  # inputs x_t of equations t = lo..top
        tau = coeffs.timesteps[ts].repeat_interleave(bsz)
        eps = eps_fn(states.reshape(-1, *shape), tau).detach().to(f64).reshape(len(ts), bsz, dim)
        iters += 1
        nfe += len(ts) * bsz
        d = b[ts, None, None] * eps + c[ts, None, None] * xi[lo : top + 1]

        # first-order residual of equation t (lives in x_{t-1}) and the stopping rule
        r1 = a[ts, None, None] * states + d - x[lo - 1 : top]
        rms = r1.pow(2).mean(-1).sqrt().amax(-1)  # worst sample, (rows,)
        ratio = rms * scale[ts] / tol[ts]
        residuals.append(float(ratio.max()))
        bad = torch.nonzero(ratio > 1.0)
        if len(bad) == 0:  # the whole window converged: freeze it
            top = lo - 1
            continue
        new_top = lo + int(bad.max())

        # order-k map truncated at the exact state x_{new_top}
        rows = new_top - lo + 1
        t_idx = torch.arange(lo, new_top + 1)
        q = pcum[t_idx - 1, None, None] * d[:rows]
        csum = torch.cat([torch.zeros(1, bsz, dim, dtype=f64), q.cumsum(0)])  # csum[i]: t<lo+i
        end = torch.clamp(t_idx + cfg.order - 1, max=new_top)
        g = pcum[end, None, None] * x[end] + csum[end - lo + 1] - csum[t_idx - lo]
        g = g / pcum[t_idx - 1, None, None]
        cur = x[lo - 1 : new_top]  # unknowns x_{t-1}, t = lo..new_top
        r = g - cur

        count[lo - 1 : new_top] += 1
        full_r = torch.zeros(n, bsz, dim, dtype=f64)
        full_r[lo - 1 : new_top] = r
        hist.append((x[:n].clone(), full_r))
        if m1 > 0 and len(hist) > 1:
            # history slots of a state from before it entered the window are masked by count
            xs = torch.stack([h[0][lo - 1 : new_top] for h in hist], -1)
            rs = torch.stack([h[1][lo - 1 : new_top] for h in hist], -1)
            dx, dr = xs[..., 1:] - xs[..., :-1], rs[..., 1:] - rs[..., :-1]
            jn = dx.shape[-1]
            avail = torch.clamp(count[lo - 1 : new_top] - 1, max=jn)  # usable differences per row
            valid = torch.arange(jn)[None, :] >= (jn - avail)[:, None]  # newest are last
            gamma = _ridge_gammas(dr, r, valid, cfg.ridge)
            gamma[-1] = 0.0  # safeguard: noisiest unconverged equation gets the plain update
            step_ = r - torch.einsum("sbdj,sbj->sbd", dx + dr, gamma)
        else:
            step_ = r
        x[lo - 1 : new_top] = cur + step_
        top = new_top - 1  # x_{new_top - 1} is now exact

    samples = x[0].reshape(bsz, *shape).to(z.dtype)
    return ParaTAAResult(
        samples=samples,
        trajectory=x.reshape(n + 1, bsz, *shape),
        iterations=iters,
        residuals=residuals,
        nfe=nfe,
    )
