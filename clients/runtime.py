"""Client runtime: per-process caches of partitions and models, and per-round seeds."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from fedsim.comm.npy import record_to_torch
from fedsim.tasks.arrays import ArrayDataset
from fedsim.tasks.datasets import data_source
from fedsim.tasks.device import module_device, resolve_device
from fedsim.tasks.kind import TaskKind, task_kind
from fedsim.tasks.task import client_split

_DATA: dict[tuple, tuple[ArrayDataset, ArrayDataset]] = {}
_MODELS: dict[tuple[TaskKind, torch.device], nn.Module] = {}
_DEVICES: dict[str, torch.device] = {}  # train.device -> what it means in this process
# the last global-model record decoded: its (name, payload bytes object) pairs and tensors
_GLOBAL: list = [None, None]
# the last (model, global tensors) pair found compatible: their tensors, paired for copy_
_LOADS: list = [None, None, None]


def local_data(setup, partition_id: int,
               data_path: str | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """This client's (train, local test) split, loaded once per process and partition (or
    at every call, from a source whose ``keep_partitions`` is False).

    ``data_path`` (a deployed SuperNode's ``--data-path``): the client's own ``.npz`` file
    replaces the partition (see ``fedsim/deploy/client_data.py``).
    """
    key = (task_kind(setup), partition_id, data_path)  # the kind: task settings and seed
    if key not in _DATA:
        if data_path:
            from fedsim.deploy.client_data import load_client_data

            _DATA[key] = load_client_data(data_path, setup.task.dataset,
                                          setup.task.local_test_fraction,
                                          setup.seed * 1_000_003 + partition_id)
        elif not data_source(setup.task, setup.seed).keep_partitions:
            return client_split(setup.task, setup.seed, partition_id)
        else:
            _DATA[key] = client_split(setup.task, setup.seed, partition_id)
    return _DATA[key]


def client_device(setup) -> torch.device:
    """The device this process trains the task on (``train.device``, resolved once per
    process; a task kind that cannot leave the CPU stays there)."""
    requested = setup.train.device
    if requested not in _DEVICES:
        _DEVICES[requested] = resolve_device(requested)
    return _DEVICES[requested] if task_kind(setup).runs_on_gpu else torch.device("cpu")


def model_for(setup, device: torch.device | None = None) -> nn.Module:
    """A reusable model instance for the task on ``device`` (default: the CPU); its
    parameters are overwritten every round."""
    key = (task_kind(setup), device or torch.device("cpu"))
    if key not in _MODELS:
        _MODELS[key] = key[0].new_model().to(key[1])
    return _MODELS[key]


def global_tensors(record: ArrayRecord, device: torch.device | None = None) -> \
        OrderedDict[str, torch.Tensor]:
    """``record_to_torch(record)`` on ``device`` (default: the CPU), decoded and moved once
    for every message that carries these very payloads (an actor's batch shares one
    global-model record). The tensors are shared: callers copy from them and never modify
    them."""
    device = device or torch.device("cpu")
    key = [device, *((name, array.data) for name, array in record.items())]
    last, tensors = _GLOBAL
    if last is not None and len(last) == len(key) and last[0] == device and all(
            name == other and data is other_data
            for (name, data), (other, other_data) in zip(key[1:], last[1:], strict=True)):
        return tensors
    tensors = record_to_torch(record)
    if device.type != "cpu":
        tensors = OrderedDict((name, t.to(device)) for name, t in tensors.items())
    _GLOBAL[:] = [key, tensors]
    return tensors


def load_global_model(model: nn.Module, record: ArrayRecord,
                      device: torch.device | None = None) -> None:
    """``model.load_state_dict(record.to_torch_state_dict())``, without its cost per call.

    The global model is decoded once per batch (:func:`global_tensors`) and, when its names,
    shapes and dtypes are the model's own, copied straight into the model's tensors; torch's
    ``load_state_dict`` walks every module with its hooks (about 75 us for the small CNN).
    The pairing of the model's tensors with the global ones is kept while the model and the
    record stay the same (every client half updates the parameters in place). Anything else
    goes through ``load_state_dict`` and its error messages. ``device``: the model's (found
    from its parameters when not given)."""
    tensors = global_tensors(record, device or module_device(model))
    model_seen, tensors_seen, pairs = _LOADS
    if model_seen is not model or tensors_seen is not tensors:  # a new round or model
        own = model.state_dict(keep_vars=True)
        if own.keys() != tensors.keys() or any(
                t.shape != own[k].shape or t.dtype != own[k].dtype for k, t in tensors.items()):
            _LOADS[:] = [None, None, None]
            model.load_state_dict(tensors)
            return
        pairs = [(own[key], value) for key, value in tensors.items()]
        _LOADS[:] = [model, tensors, pairs]
    with torch.no_grad():
        for target, value in pairs:
            target.copy_(value)


def round_seed(seed: int, partition_id: int, server_round: int, stream: int) -> int:
    """A 63-bit seed for one client, round and purpose (0: batches, 1: noise)."""
    state = np.random.SeedSequence([seed, partition_id, server_round, stream]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)
