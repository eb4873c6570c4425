"""What kind of learning a task is: its model, its clients' loss, and how it is evaluated.

``TASK_KINDS`` maps ``task.kind`` to a :class:`TaskKind` subclass (entry point group
``fedsim.tasks``). Every strategy's client half runs its local loop through
:func:`fedsim.tasks.training.backward_on_next_batch`, which asks the batches for their loss, so
a task kind plugs a new objective into every strategy without touching one:

- ``classification``: cross-entropy on labelled images (the default,
  ``fedsim/tasks/classification.py``);
- ``diffusion``: the DDPM denoising loss (``fedsim/diffusion/ddpm_task.py``);
- ``dno``: the negated private reward of a frozen sampler's samples, the optimised "model" being
  the sampler's noise (``fedsim/diffusion/dno_task.py``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.config.build import to_dict
from fedsim.registry import Registry
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import data_source
from fedsim.tasks.training import BatchLoss


class CentralEvaluator(ABC):
    """The server's evaluation of the global arrays after a round (may write files)."""

    @abstractmethod
    def __call__(self, arrays: ArrayRecord, server_round: int) -> dict[str, float]:
        """Metrics of the global arrays, keyed as they go into metrics.jsonl."""


class TaskKind(ABC):
    """One kind of task: built from the experiment (or a client's setup), shared by both halves.

    ``spec`` is anything with ``task``, ``diffusion``, ``dno`` and ``seed`` attributes: the
    server's ``ExperimentConfig`` or a client's ``ClientSetup``.
    """

    settings: tuple[str, type] | None = None
    """The config section this kind reads and its dataclass, e.g. ``("diffusion",
    DiffusionConfig)`` (``fedsim list --params``)."""
    runs_on_gpu = True
    """Whether the clients' local work may run on ``train.device``'s GPU (else the CPU)."""
    evaluates_on_gpu = False
    """Whether the server's central evaluation may run on ``eval.device``'s GPU."""
    evaluates_local_data = True
    """Whether a client's evaluation scores its local test split (an empty split: nothing)."""

    def __init__(self, spec: Any) -> None:
        self.task = spec.task
        self.seed = int(spec.seed)
        source = data_source(self.task, self.seed)
        self.input_shape = tuple(source.input_shape)
        self.num_classes = int(source.num_classes)

    @abstractmethod
    def new_model(self) -> nn.Module:
        """A fresh instance of the model whose parameters are federated."""

    def initial_arrays(self) -> ArrayRecord:
        """The global model's initial parameters, drawn from the seed."""
        torch.manual_seed(self.seed)
        return ArrayRecord(self.new_model().state_dict())

    @abstractmethod
    def batch_loss(self, train_data: ArrayDataset, partition_id: int) -> BatchLoss:
        """The loss a client minimises in its local steps."""

    @abstractmethod
    def evaluate(self, model: nn.Module, data: ArrayDataset,
                 partition_id: int) -> dict[str, float]:
        """A client's evaluation of the global model on its local test split (must hold
        ``loss``; keys become ``eval-<key>`` in the reply)."""

    @abstractmethod
    def central_evaluator(self, run_dir: Path,
                          device: torch.device | None = None) -> CentralEvaluator:
        """The server's evaluator, writing any files (sample grids) into ``run_dir``, on
        ``device`` (the CPU when None, and always for kinds that do not ``evaluates_on_gpu``)."""

    def server_update(self, arrays: ArrayRecord, server_round: int) -> ArrayRecord:
        """A server-side step after aggregation (identity except for DNO's P(z))."""
        return arrays

    def prepare(self, run_dir: Path) -> dict[str, Any]:
        """Server-side work before round 1; returns settings to change in the clients' setup
        (DNO: the path of the frozen generator it pre-trained)."""
        return {}


def _as_kind(obj: Any) -> type[TaskKind]:
    if not (isinstance(obj, type) and issubclass(obj, TaskKind)):
        raise TypeError(f"expected a subclass of fedsim.tasks.kind.TaskKind, got "
                        f"{getattr(obj, '__name__', type(obj).__name__)}")
    return obj


TASK_KINDS: Registry[type[TaskKind]] = Registry("task kind", "fedsim.tasks", check=_as_kind)


_KINDS: dict[str, TaskKind] = {}
_BY_SPEC: dict[int, tuple[Any, TaskKind]] = {}  # id(spec) -> (spec, kind): the per-call path


def task_kind(spec: Any) -> TaskKind:
    """The (process-wide cached) task kind of an experiment config or client setup.

    Clients call this for every message with the same parsed setup object, so the kind is
    found by that object's identity first (the spec is held, so its id cannot be reused)."""
    hit = _BY_SPEC.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_BY_SPEC) >= 64:
        _BY_SPEC.pop(next(iter(_BY_SPEC)))
    kind = _kind_by_value(spec)
    _BY_SPEC[id(spec)] = (spec, kind)
    return kind


def _kind_by_value(spec: Any) -> TaskKind:
    key = json.dumps([to_dict(spec.task), to_dict(spec.diffusion), to_dict(spec.dno),
                      int(spec.seed)], sort_keys=True)
    if key not in _KINDS:
        _KINDS[key] = TASK_KINDS.get(spec.task.kind)(spec)
    return _KINDS[key]
