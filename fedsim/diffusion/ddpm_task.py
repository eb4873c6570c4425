"""The ``diffusion`` task kind: a DDPM trained federatedly (described in docs/diffusion.md).

Clients minimise the denoising loss of Ho et al. 2020 (Algorithm 1) on their private images with
whatever strategy the config names (FedAvg, FedLion, z-SignFedAvg, ...): to the strategies it is
one more dense-gradient objective. Each central evaluation draws a fixed batch of noise, samples
it with DDIM (``diffusion.sample_steps``, ``diffusion.eta``), writes the grid as
``samples/round_NNNN.png`` and scores it with a classifier trained on the held-out central test
set: the quality proxy is the share of samples it labels with top probability at least
``diffusion.confidence``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.comm.npy import record_to_torch
from fedsim.config.schema import DiffusionConfig
from fedsim.diffusion.classifier import train_classifier
from fedsim.diffusion.images import save_grid
from fedsim.diffusion.model import EpsMLP, EpsMLPConfig
from fedsim.diffusion.samplers import model_eps_fn, sample_noise, sequential_sample
from fedsim.diffusion.schedule import sampler_coeffs
from fedsim.diffusion.training import ddpm_loss
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.device import module_device
from fedsim.tasks.hub import HUB_DATASETS
from fedsim.tasks.kind import CentralEvaluator, TaskKind
from fedsim.tasks.task import central_test
from fedsim.tasks.training import BatchLoss

SAMPLES_DIR = "samples"


def to_signed_unit(x: torch.Tensor | np.ndarray, dataset: str) -> torch.Tensor:
    """Task images (digits in [0, 1]; hub datasets normalised by mean/std) -> [-1, 1]."""
    x = torch.as_tensor(x, dtype=torch.float32)
    info = HUB_DATASETS.get(dataset)
    if info is not None:
        mean = torch.tensor(info.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(info.std, device=x.device).view(1, -1, 1, 1)
        x = x * std + mean
    return 2.0 * x - 1.0


def eps_mlp(d: DiffusionConfig, input_shape: tuple[int, int, int]) -> EpsMLP:
    """The eps-MLP of the ``[diffusion]`` section for images of ``input_shape``."""
    c, h, w = input_shape
    return EpsMLP(EpsMLPConfig(channels=c, height=h, width=w, hidden=d.hidden, depth=d.depth,
                               time_dim=d.time_dim))


@torch.no_grad()
def denoising_loss(model: nn.Module, x0: torch.Tensor, seed: int,
                   num_train_steps: int) -> float:
    """The DDPM loss of ``model`` on clean images ``x0`` in [-1, 1] with fixed timesteps and
    noise drawn from ``seed`` (comparable across rounds)."""
    if len(x0) == 0:
        return float("nan")
    model.eval()
    g = torch.Generator().manual_seed(seed)
    return float(ddpm_loss(model, x0.to(module_device(model)), g, num_train_steps))


class DenoisingDiffusion(TaskKind):
    """DDPM training: eps-MLP, denoising loss, sample grids and a quality proxy."""

    settings = ("diffusion", DiffusionConfig)

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.diffusion = spec.diffusion

    def new_model(self) -> nn.Module:
        return eps_mlp(self.diffusion, self.input_shape)

    def batch_loss(self, train_data: ArrayDataset, partition_id: int) -> BatchLoss:
        dataset, steps = self.task.dataset, self.diffusion.num_train_steps

        def loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
            return ddpm_loss(model, to_signed_unit(xb, dataset), generator, steps)

        return loss

    def evaluate(self, model: nn.Module, data: ArrayDataset,
                 partition_id: int) -> dict[str, float]:
        x0 = to_signed_unit(data.x, self.task.dataset)
        return {"loss": denoising_loss(model, x0, self.seed * 1_000_003 + partition_id,
                                       self.diffusion.num_train_steps)}

    def central_evaluator(self, run_dir: Path,
                          device: torch.device | None = None) -> CentralEvaluator:
        """On the CPU, whatever ``device`` (``eval.device = cuda`` is refused for this kind)."""
        return SampleQuality(self, central_test(self.task, self.seed), run_dir)


class SampleQuality(CentralEvaluator):
    """Denoising loss on the central test set, a DDIM sample grid PNG and the quality proxy."""

    def __init__(self, kind: DenoisingDiffusion, data: ArrayDataset, run_dir: Path) -> None:
        d = kind.diffusion
        self.kind, self.run_dir = kind, run_dir
        self.model = kind.new_model()
        self.x0 = to_signed_unit(data.x, kind.task.dataset)
        self.classifier = train_classifier(self.x0, torch.from_numpy(data.y),
                                           seed=kind.seed)
        self.coeffs = sampler_coeffs(d.sample_steps, d.eta, d.num_train_steps)
        self.z = sample_noise(d.num_samples, tuple(self.x0.shape[1:]), d.sample_steps,
                              torch.Generator().manual_seed(kind.seed + 1))

    @torch.no_grad()
    def __call__(self, arrays: ArrayRecord, server_round: int) -> dict[str, float]:
        d = self.kind.diffusion
        self.model.load_state_dict(record_to_torch(arrays))
        self.model.eval()
        loss = denoising_loss(self.model, self.x0, self.kind.seed, d.num_train_steps)
        samples = sequential_sample(model_eps_fn(self.model), self.coeffs, self.z).clamp(-1, 1)
        probs = self.classifier(samples).softmax(1)
        top, label = probs.max(1)
        confident = top >= d.confidence
        save_grid(samples, self.run_dir / SAMPLES_DIR / f"round_{server_round:04d}.png",
                  titles=[str(int(c)) if ok else "?" for c, ok in zip(label, confident,
                                                                        strict=True)])
        return {"central_loss": loss,
                "sample_quality": float(confident.float().mean()),
                "sample_class_coverage": len(set(label[confident].tolist()))
                / self.kind.num_classes}
