"""The ``classification`` task kind: cross-entropy on labelled examples, evaluated by loss and
accuracy (the default ``task.kind``)."""

from __future__ import annotations

from pathlib import Path

import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.comm.npy import record_to_torch
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.kind import CentralEvaluator, TaskKind
from fedsim.tasks.models import build_model
from fedsim.tasks.task import central_test
from fedsim.tasks.training import BatchLoss, cross_entropy, evaluate, evaluate_tensors


class Classification(TaskKind):
    """Cross-entropy on labelled images; evaluated by loss and accuracy."""

    evaluates_on_gpu = True

    def new_model(self) -> nn.Module:
        return build_model(self.task.model, self.input_shape, self.num_classes)

    def batch_loss(self, train_data: ArrayDataset, partition_id: int) -> BatchLoss:
        return cross_entropy

    def evaluate(self, model: nn.Module, data: ArrayDataset,
                 partition_id: int) -> dict[str, float]:
        loss, acc = evaluate(model, data)
        return {"loss": loss, "accuracy": acc}

    def central_evaluator(self, run_dir: Path,
                          device: torch.device | None = None) -> CentralEvaluator:
        return _AccuracyEvaluator(self, central_test(self.task, self.seed), device)


class _AccuracyEvaluator(CentralEvaluator):
    """Loss and accuracy on the central test set, the model and the test set kept on
    ``device`` (copied there once, not every round)."""

    def __init__(self, kind: Classification, data: ArrayDataset,
                 device: torch.device | None = None) -> None:
        device = device or torch.device("cpu")
        self.model = kind.new_model().to(device)
        self.x = torch.from_numpy(data.x).to(device)
        self.y = torch.from_numpy(data.y).to(device)

    def __call__(self, arrays: ArrayRecord, server_round: int) -> dict[str, float]:
        self.model.load_state_dict(record_to_torch(arrays))
        loss, acc = evaluate_tensors(self.model, self.x, self.y)
        return {"central_loss": loss, "central_accuracy": acc}
