"""Distributed eps evaluation for ParaTAA (arXiv 2402.09970) over a pool of Ray actors.

Each ParaTAA iteration needs eps_theta at every state of its window, which is embarrassingly
parallel. :class:`RayEpsPool` is an ``eps_fn`` that splits the window's batch into contiguous
slices, one per actor (each holds a model replica, as each GPU does in the official 8-GPU
``accelerate`` split of arXiv 2402.09970), and concatenates the results; the driver keeps the
trajectory and runs the TAA step. Traffic per iteration: each actor receives its slice of states
and returns its slice of eps.
"""

from __future__ import annotations

import ray
import torch

from fedsim.diffusion.model import EpsMLP, EpsMLPConfig


class EpsWorker:
    """Ray actor body: one frozen model replica evaluating eps on slices of states."""

    def __init__(self, config: dict, state_dict: dict, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.model = EpsMLP(EpsMLPConfig(**config))
        self.model.load_state_dict(state_dict)
        self.model.eval()

    @torch.no_grad()
    def eps(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.model(x.float(), tau)


class RayEpsPool:
    """``eps_fn(x_batch, tau_batch)`` backed by ``num_workers`` Ray actors (Ray must be running)."""

    def __init__(self, model: EpsMLP, num_workers: int = 2, num_cpus_per_worker: float = 1.0):
        if not ray.is_initialized():
            raise RuntimeError("call ray.init(...) before building a RayEpsPool")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        remote = ray.remote(num_cpus=num_cpus_per_worker)(EpsWorker)
        state_ref = ray.put(state)
        self.workers = [remote.remote(model.config_dict(), state_ref) for _ in range(num_workers)]
        self.calls = 0

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        n = len(self.workers)
        xs, ts = torch.tensor_split(x, n), torch.tensor_split(tau, n)
        futures = [
            w.eps.remote(xi, ti) for w, xi, ti in zip(self.workers, xs, ts, strict=True) if len(xi)
        ]
        self.calls += 1
        return torch.cat(ray.get(futures)).to(x.dtype)

    def shutdown(self) -> None:
        """Kill the actors (Ray itself is left to the caller)."""
        for w in self.workers:
            ray.kill(w)
        self.workers = []
