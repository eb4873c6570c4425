"""Which torch device a client trains on (``train.device``).

``auto`` follows the resources the client was given: inside a Ray actor (the fedsim engine's
or Flower's simulation) a client trains on CUDA only when Ray assigned that actor a GPU (a
profile's ``num_gpus``, whole or fractional; Ray then sets ``CUDA_VISIBLE_DEVICES`` to it), so
logical GPUs on a machine without CUDA, or CPU-only profiles beside GPU ones, stay on the CPU.
Anywhere else (a deployed SuperNode, the in-process engine) ``auto`` means CUDA when torch
sees one. ``cpu`` and ``cuda``/``cuda:N`` force a device; asking for CUDA where torch has none
is an error naming the field. The arrays that travel are always CPU numpy arrays: a client
moves the global model onto its device, and its update back, as a real client would.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is resolved, not by config checks
    import numpy as np
    import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def valid_device(requested: str) -> bool:
    """Whether ``requested`` is a ``train.device`` value fedsim accepts."""
    return DEVICE_PATTERN.fullmatch(requested) is not None


def _ray_actor_gpus() -> list | None:
    """The GPU ids Ray assigned to this process if it is a Ray actor, else None."""
    ray = sys.modules.get("ray")  # never import Ray just to ask
    if ray is None or not ray.is_initialized():
        return None
    if ray.get_runtime_context().get_actor_id() is None:  # the driver
        return None
    return list(ray.get_gpu_ids())


def resolve_device(requested: str = "auto", field: str = "train.device") -> torch.device:
    """The device ``field = requested`` means in this process (see the module doc; the same
    rules place the server's central evaluation, ``eval.device``, in the driver)."""
    import torch

    if not valid_device(requested):
        raise ValueError(f"{field} = {requested!r} is not one of {DEVICE_CHOICES}")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        gpus = _ray_actor_gpus()
        return torch.device("cpu") if gpus is not None and not gpus else torch.device("cuda")
    if not torch.cuda.is_available():
        raise ValueError(f"{field} = {requested!r} but torch sees no CUDA device on this "
                         f"machine (torch {torch.__version__}); use 'auto' or 'cpu'")
    device = torch.device(requested)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{field} = {requested!r} but this process sees "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """``tensor`` as a CPU numpy array (a view when it already lives on the CPU)."""
    return tensor.detach().cpu().numpy()


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    import torch

    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
