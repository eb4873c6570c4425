"""The ``dno`` task kind: federated Direct Noise Optimization (described in docs/diffusion.md).

A PLATFORM EXTENSION, not a reproduction of any paper. The federated "model" is the noise
z = (x_T, xi_T, ..., xi_1) of a frozen DDPM sampler x_0 = M_theta(z) (DNO, Tang et al.,
arXiv 2405.18881, Sec. 3). Every client scores M(z) with a private reward r_i and its local steps
descend the clipped feedback gradient of -r_i (backprop through the sampler, or Hybrid-2 / ZO
from reward values only, ``fedsim/diffusion/dno.py``), so every strategy applies unchanged:
FedLion uploads integer Lion steps on z, z-SignFedAvg uploads sign(Delta z + sigma xi).
The server holds the probability regulariser P(z) (DNO Sec. 4) and after each aggregation takes
the step z <- z - server_lr * clip(gamma_reg * grad P(z)), keeping z in the Gaussian typical set.
The objective is max_z (1/n) sum_i r_i(M(z)) - gamma_reg P(z).
"""

from __future__ import annotations

import functools
import pickle  # only for its error type: nothing here unpickles
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.checkpoint import load_checkpoint
from fedsim.config.errors import ConfigError
from fedsim.config.schema import DiffusionConfig, DnoConfig
from fedsim.diffusion.classifier import train_classifier
from fedsim.diffusion.ddpm_task import SAMPLES_DIR, eps_mlp, to_signed_unit
from fedsim.diffusion.dno import (
    clip_norm,
    feedback_grad,
    make_sampler,
    prob_reg,
    prob_reg_grad,
    regularised_noise,
)
from fedsim.diffusion.images import save_grid
from fedsim.diffusion.rewards import ClassifierLogProb, Reward, brightness, compressibility
from fedsim.diffusion.samplers import model_eps_fn
from fedsim.diffusion.schedule import sampler_coeffs
from fedsim.diffusion.training import train_ddpm
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import data_source
from fedsim.tasks.kind import CentralEvaluator, TaskKind
from fedsim.tasks.task import central_test, client_split
from fedsim.tasks.training import BatchLoss

GENERATOR_FILE = "generator.pt"


class NoiseVector(nn.Module):
    """The optimised noise z (num_samples, N + 1, C, H, W) as the one federated parameter."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.randn(shape))


def load_generator(path: str, diffusion: DiffusionConfig,
                   input_shape: tuple[int, int, int]) -> nn.Module:
    """The frozen eps-MLP from a results folder (its checkpoint) or a ``.pt`` state dict,
    both read without pickle (a ConfigError naming ``dno.generator`` for anything else)."""
    model = eps_mlp(diffusion, input_shape)
    source = Path(path)
    if source.is_dir():
        try:
            ckpt = load_checkpoint(source)
        except ConfigError as e:
            raise ConfigError("dno.generator", path, e.allowed) from e
        if ckpt is None:
            raise FileNotFoundError(f"dno.generator: no checkpoint in {source}")
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in ckpt.arrays.items()}
    else:
        try:  # weights only: tensors and containers, never an object the file names
            state = torch.load(source, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            raise ConfigError("dno.generator", path, "a results folder or a .pt state dict of "
                              f"tensors ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                              ) from e
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class NoiseOptimisation(TaskKind):
    """Federated DNO: z is shared, rewards are private, P(z) is the server's."""

    settings = ("dno", DnoConfig)

    runs_on_gpu = False  # the frozen generator and the private rewards are CPU-only for now
    evaluates_local_data = False  # a client scores z with its private reward, not test rows

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.spec, self.dno = spec, spec.dno
        self.coeffs = sampler_coeffs(self.dno.sample_steps, self.dno.eta,
                                     spec.diffusion.num_train_steps)
        self.z_shape = (self.dno.num_samples, self.dno.sample_steps + 1, *self.input_shape)
        self.generator_path = self.dno.generator
        self._sampler = None  # built on first use, once the generator path is known

    def new_model(self) -> nn.Module:
        return NoiseVector(self.z_shape)

    # -- the frozen generator -------------------------------------------------------------
    def prepare(self, run_dir: Path) -> dict[str, Any]:
        """Pre-train the generator centrally when ``dno.generator`` is empty (once per run
        folder); clients get its path in their setup."""
        if self.generator_path:
            return {}
        path = run_dir / GENERATOR_FILE
        if not path.exists():
            torch.manual_seed(self.seed)
            model = eps_mlp(self.spec.diffusion, self.input_shape)
            pool = data_source(self.task, self.seed).pool  # digits only (config check)
            train_ddpm(model, to_signed_unit(pool.x, self.task.dataset),
                       steps=self.dno.pretrain_steps, seed=self.seed)
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
        self.generator_path = str(path.resolve())
        return {"dno.generator": self.generator_path}

    def sampler(self):
        """M_theta(z) with the frozen generator (differentiable in z), loaded once per process
        (task kinds are cached per process)."""
        if self._sampler is None:
            generator = load_generator(self.generator_path, self.spec.diffusion,
                                       self.input_shape)
            self._sampler = make_sampler(model_eps_fn(generator), self.coeffs)
        return self._sampler

    # -- clients: private rewards ---------------------------------------------------------
    def private_reward(self, partition_id: int) -> Reward:
        """Client ``partition_id``'s reward (built from its own training split only)."""
        if self.dno.reward == "brightness":
            return brightness
        if self.dno.reward == "compressibility":
            return compressibility
        return _private_classifier_reward(self, partition_id)

    def batch_loss(self, train_data: ArrayDataset, partition_id: int) -> BatchLoss:
        reward, dno = self.private_reward(partition_id), self.dno
        sampler = self.sampler()

        def loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
            """Value -mean r_i(M(z)); gradient the clipped feedback of the chosen estimator
            (under ``torch.no_grad`` only the value: zeroth-order clients need no more)."""
            z = model.z
            if not torch.is_grad_enabled():
                return -reward(sampler(z)).mean()
            grad, r, _ = feedback_grad(dno.method, z, sampler, reward, dno.q, dno.mu, generator)
            grad = clip_norm(grad, dno.clip)
            surrogate = (grad * z).sum()
            return surrogate - surrogate.detach() - r.mean()

        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: ArrayDataset,
                 partition_id: int) -> dict[str, float]:
        r = float(self.private_reward(partition_id)(self.sampler()(model.z)).mean())
        return {"loss": -r, "reward": r}

    # -- server: P(z) and public measurements ---------------------------------------------
    def server_update(self, arrays: ArrayRecord, server_round: int) -> ArrayRecord:
        """z <- z - server_lr * clip(gamma_reg * grad P(z)) (DNO Sec. 4, Eq. 8-10)."""
        dno = self.dno
        if dno.gamma_reg == 0 or dno.server_lr == 0:
            return arrays
        z = arrays["z"].numpy()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + server_round)
        _, grad = prob_reg_grad(torch.from_numpy(z.copy()), self.coeffs, generator=gen)
        step = clip_norm(dno.gamma_reg * grad, dno.clip)
        new = torch.from_numpy(z) - dno.server_lr * step.to(torch.float32)
        return ArrayRecord({"z": new.contiguous()})

    def central_evaluator(self, run_dir: Path,
                          device: torch.device | None = None) -> CentralEvaluator:
        """On the CPU, whatever ``device`` (``eval.device = cuda`` is refused for this kind)."""
        return NoiseReport(self, run_dir)


@functools.lru_cache(maxsize=256)
def _private_classifier_reward(kind: NoiseOptimisation, partition_id: int) -> Reward:
    train, _ = client_split(kind.task, kind.seed, partition_id)
    x, y = to_signed_unit(train.x, kind.task.dataset), torch.from_numpy(train.y)
    clf = train_classifier(x, y, seed=kind.seed * 1_000_003 + partition_id)
    target = kind.dno.target_digit
    if target < 0:  # this client's own preference: its most frequent label
        target = int(np.bincount(train.y, minlength=kind.num_classes).argmax())
    return ClassifierLogProb(clf, target)


class NoiseReport(CentralEvaluator):
    """What the server can see of z: P(z), mean z^2, the samples' pixel range, brightness,
    compressed size, and (classifier reward) a held-out classifier's p(target digit); writes
    the sample grid as ``samples/round_NNNN.png``."""

    def __init__(self, kind: NoiseOptimisation, run_dir: Path) -> None:
        self.kind, self.run_dir = kind, run_dir
        self.judge = None
        if kind.dno.reward == "classifier" and kind.dno.target_digit >= 0:
            test = central_test(kind.task, kind.seed)
            self.judge = train_classifier(to_signed_unit(test.x, kind.task.dataset),
                                          torch.from_numpy(test.y), seed=kind.seed)

    @torch.no_grad()
    def __call__(self, arrays: ArrayRecord, server_round: int) -> dict[str, float]:
        z = torch.from_numpy(arrays["z"].numpy().copy())
        x = self.kind.sampler()(z)
        gen = torch.Generator().manual_seed(self.kind.seed)
        v = regularised_noise(z, self.kind.coeffs)
        out = {"noise_z_sq": float(v.pow(2).mean()),
               "noise_prob_reg": float(prob_reg(v, generator=gen).mean()),
               "sample_out_of_range": float((x.abs() > 1).float().mean()),
               "sample_brightness": float(brightness(x).mean()),
               "sample_zlib_bytes": float(-compressibility(x).mean())}
        if self.judge is not None:
            p = self.judge(x).softmax(1)[:, self.kind.dno.target_digit]
            out["sample_target_prob"] = float(p.mean())
        save_grid(x, self.run_dir / SAMPLES_DIR / f"round_{server_round:04d}.png")
        return out
