"""The one flat-vector <-> parameters conversion every strategy uses, on both halves.

Sign and integer codecs act on one flat vector of all d model coordinates; Flower carries a
model as an ``ArrayRecord`` keyed like the torch ``state_dict``. The order is the record's
(= the ``state_dict``'s) key order, C-order within each tensor, on the server and the client.

- server: :class:`Layout` (keys, shapes, dtypes of the global arrays) with ``flatten`` /
  ``unflatten`` between an ``ArrayRecord`` and a float64 vector (float64 so that sums of many
  client updates are exact enough; arrays go back in their own dtype);
- client: :func:`model_vector`, :func:`load_vector` and :func:`grad_vector` on a torch model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

from fedsim.comm.float_codec import FloatCodec
from fedsim.comm.npy import view
from fedsim.tasks.device import to_numpy


@dataclass(frozen=True)
class Layout:
    """Where each named tensor lives in the flat vector."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]

    @classmethod
    def of(cls, arrays: ArrayRecord) -> Layout:
        nds = [view(arrays[k]) for k in arrays]
        return cls(tuple(arrays.keys()), tuple(a.shape for a in nds), tuple(a.dtype for a in nds))

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, arrays: ArrayRecord) -> np.ndarray:
        """All coordinates of ``arrays`` as one float64 vector (layout order)."""
        return np.concatenate([view(arrays[k]).reshape(-1).astype(np.float64)
                               for k in self.keys]) if self.keys else np.zeros(0)

    def unflatten(self, vec: np.ndarray) -> ArrayRecord:
        """The ``ArrayRecord`` holding ``vec`` with this layout's keys, shapes and dtypes."""
        out, off = {}, 0
        for key, shape, dtype in zip(self.keys, self.shapes, self.dtypes, strict=True):
            n = int(np.prod(shape))
            out[key] = Array(np.ascontiguousarray(vec[off:off + n].reshape(shape).astype(dtype)))
            off += n
        return ArrayRecord(out)


def model_vector(model: nn.Module) -> torch.Tensor:
    """The model's ``state_dict`` as one float32 vector (a copy)."""
    return torch.cat([t.detach().reshape(-1).float() for t in model.state_dict().values()])


@torch.no_grad()
def load_vector(model: nn.Module, vec: torch.Tensor) -> None:
    """Write ``vec`` (layout order) into the model's ``state_dict`` tensors in place."""
    off = 0
    for t in model.state_dict().values():
        n = t.numel()
        t.copy_(vec[off:off + n].view_as(t))
        off += n


def grad_vector(model: nn.Module) -> torch.Tensor:
    """The gradients in layout order (zeros for buffers and parameters without a gradient)."""
    params = dict(model.named_parameters())
    parts = []
    for key, t in model.state_dict().items():
        p = params.get(key)
        g = p.grad if p is not None else None
        parts.append(torch.zeros(t.numel(), device=t.device) if g is None
                     else g.detach().reshape(-1).float())
    return torch.cat(parts)


def fp32_record(vec: torch.Tensor) -> ArrayRecord:
    """A vector as ``FloatCodec("fp32")`` encodes it for uplink (the whole vector at 32 bits
    per parameter: FAFED's and FedDA's client replies)."""
    return ArrayRecord({k: Array(a) for k, a in FloatCodec("fp32").encode(to_numpy(vec)).items()})


def vector_record(vec: np.ndarray | torch.Tensor, key: str = "values") -> ArrayRecord:
    """A float32 vector as a one-Array record (downlink state such as global momentum)."""
    if isinstance(vec, torch.Tensor):
        vec = to_numpy(vec)
    return ArrayRecord({key: Array(np.ascontiguousarray(vec, dtype=np.float32))})


def record_vector(record: ArrayRecord, key: str = "values",
                  device: torch.device | None = None) -> torch.Tensor:
    """Inverse of :func:`vector_record`, as a float32 torch vector on ``device`` (the CPU by
    default)."""
    vec = torch.from_numpy(np.array(record[key].numpy(), dtype=np.float32))
    return vec if device is None else vec.to(device)
