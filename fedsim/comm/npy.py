"""Flower ``Array`` <-> numpy/torch without ``np.save``/``np.load``, byte for byte the same.

A Flower ``Array`` (stype ``numpy.ndarray``) stores the ``.npy`` file of its array: a header
(magic, version, a Python-literal dict of dtype, order and shape) and the raw bytes. Flower
writes it with ``np.save`` and reads it with ``np.load``, whose header parsing
(``ast.literal_eval``) costs more than the copy for a small model: about 0.1 ms per array,
three times per client per round (docs/design-notes.md#npy-headers-in-every-array).

The header depends only on dtype, memory order and shape, so both directions here cache it per
layout: encoding is ``cached header + array.tobytes()``, decoding is ``np.frombuffer`` at the
cached offset. The first array of each layout goes through numpy itself, and the results are
identical to Flower's (same ``Array.data`` bytes, same values and dtype); anything unusual
(object dtypes, other stypes, malformed or truncated data) is handed to Flower's own path.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from io import BytesIO
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord

NUMPY_STYPE = "numpy.ndarray"  # flwr.common.constant.SType.NUMPY
_MAGIC = b"\x93NUMPY"
_MAX_LAYOUTS = 1024  # cached headers per direction (cleared when full)

# (dtype str, shape, fortran order) -> (npy header bytes, Flower's dtype name)
_HEADERS: dict[tuple[str, tuple[int, ...], bool], tuple[bytes, str]] = {}
# npy header bytes -> (dtype, shape, fortran order)
_LAYOUTS: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}


def _fortran(x: np.ndarray) -> bool:
    """The order ``np.save`` writes: Fortran only for F- but not C-contiguous arrays."""
    return bool(x.flags.f_contiguous and not x.flags.c_contiguous)


def encode(x: np.ndarray) -> Array:
    """``Array(x)`` (Flower's ``Array.from_numpy_ndarray``), with the npy header cached."""
    if x.dtype.hasobject or not (x.flags.c_contiguous or x.flags.f_contiguous):
        return Array.from_numpy_ndarray(x)
    fortran = _fortran(x)
    key = (x.dtype.str, tuple(x.shape), fortran)
    cached = _HEADERS.get(key)
    if cached is None:
        array = Array.from_numpy_ndarray(x)
        if len(_HEADERS) >= _MAX_LAYOUTS:
            _HEADERS.clear()
        _HEADERS[key] = (array.data[:len(array.data) - x.nbytes], array.dtype)
        return array
    header, dtype = cached
    # what np.save writes after the header, joined in one copy (x.T of a Fortran array is C)
    return _numpy_array(dtype, key[1], b"".join((header, x.T if fortran else x)))


def _numpy_array(dtype: str, shape: tuple[int, ...], data: bytes) -> Array:
    """``Array(dtype=..., shape=..., stype="numpy.ndarray", data=...)`` for fields already
    known to be valid: the same object state without the constructor's argument dispatch
    (``tests/comm/test_npy.py`` checks it against Flower's constructor)."""
    array = object.__new__(Array)
    array.__dict__.update(_is_dirty=True, dtype=dtype, shape=shape, stype=NUMPY_STYPE,
                          data=data)
    return array


def _header_length(data: bytes) -> int | None:
    """Bytes of the npy header (magic through padding), or None if this is not npy 1.0-3.0."""
    if len(data) < 10 or data[:6] != _MAGIC:
        return None
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    if data[6] in (2, 3) and len(data) >= 12:
        return 12 + int.from_bytes(data[8:12], "little")
    return None


def view(array: Array) -> np.ndarray:
    """``array.numpy()`` as a read-only view of ``array.data`` (no copy, no header parsing)."""
    data = array.data
    if array.stype != NUMPY_STYPE or (size := _header_length(data)) is None:
        return array.numpy()
    header = data[:size]
    layout = _LAYOUTS.get(header)
    if layout is None:
        ref = np.load(BytesIO(data), allow_pickle=False)
        if ref.dtype.hasobject:
            return ref
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[header] = (ref.dtype, tuple(ref.shape), _fortran(ref))
    dtype, shape, fortran = layout
    count = math.prod(shape)
    if len(data) - size < count * dtype.itemsize or dtype.itemsize == 0:
        return array.numpy()  # truncated (or zero-width): let numpy raise or handle it
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=size)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def decode(array: Array) -> np.ndarray:
    """``array.numpy()``: a writable array of the same dtype, shape and values."""
    out = view(array)
    return out if out.flags.writeable else out.copy(order="K")


def _record(arrays: dict[str, Array]) -> ArrayRecord:
    """An ArrayRecord holding these very Arrays (``ArrayRecord(dict)`` would copy each one)."""
    record = ArrayRecord()
    for key, array in arrays.items():
        record[key] = array
    return record


def record_from_numpy(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    """``ArrayRecord({k: Array(v)})`` with cached headers."""
    return _record({k: encode(np.asarray(v)) for k, v in arrays.items()})


def record_from_torch(state_dict: dict[str, Any]) -> ArrayRecord:
    """``ArrayRecord(state_dict)`` (Flower's ``from_torch_state_dict``) with cached headers."""
    return _record({k: encode(v.detach().cpu().numpy()) for k, v in state_dict.items()})


def record_to_torch(record: ArrayRecord) -> OrderedDict[str, Any]:
    """``record.to_torch_state_dict()``: writable CPU tensors, without ``np.load``."""
    import torch

    return OrderedDict((k, torch.from_numpy(decode(a))) for k, a in record.items())
