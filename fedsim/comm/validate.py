"""Checks on what a client sent, before a strategy decodes it.

A reply can be malformed because of a bug, a version mismatch, a truncated transfer or a
malicious client. Every check here raises the one exception type :class:`MalformedPayload`
naming the offending field; strategies catch it, count the reply in the round's metrics
(``train_rejected``) and drop it, instead of letting ``aggregate_train`` crash the ServerApp.

Typical use in a strategy's ``aggregate_train``::

    try:
        delta = decode_checked(reply.content["arrays"], codec, d, prefix="arrays")
    except MalformedPayload as err:
        rejected += 1; log.warning("%s", err); continue
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fedsim.comm.codec import Codec, Shape, as_shape, shape_size
from fedsim.comm.npy import view


class MalformedPayload(ValueError):
    """A reply field has the wrong keys, size, dtype or non-finite values."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"malformed payload field {field!r}: {reason}")


def _as_numpy(field: str, value: Any) -> np.ndarray:
    """``value`` as an ndarray; a Flower ``Array`` as a read-only view of its bytes (checking a
    reply copies nothing; its failures are wrapped)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy") and hasattr(value, "stype"):  # flwr.app.Array
        try:
            return view(value)
        except Exception as err:  # noqa: BLE001 - any decoding failure is a malformed payload
            raise MalformedPayload(field, f"cannot be read as an array ({err})") from err
    try:
        return np.asarray(value)
    except Exception as err:  # noqa: BLE001
        raise MalformedPayload(field, f"cannot be read as an array ({err})") from err


def check_array(field: str, value: Any, *, dtype: Any = None, size: int | None = None,
                shape: tuple[int, ...] | None = None, finite: bool = True) -> np.ndarray:
    """``value`` as an ndarray after checking dtype, size/shape and finiteness."""
    arr = _as_numpy(field, value)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise MalformedPayload(field, f"dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise MalformedPayload(field, f"shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if size is not None and arr.size != size:
        raise MalformedPayload(field, f"wrong length: {arr.size} elements, expected {size}")
    if finite and arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise MalformedPayload(field, f"non-finite values ({n_nan} NaN, {n_inf} Inf)")
    return arr


def check_packed_bits(field: str, value: Any, d: int, bits_per_value: int = 1,
                      extra_bytes: int = 0) -> np.ndarray:
    """A ``uint8`` bit payload for ``d`` values of ``bits_per_value`` bits, plus
    ``extra_bytes`` of side information: exactly ``ceil(k·d/8) + extra_bytes`` bytes."""
    arr = check_array(field, value, dtype=np.uint8)
    expected = (bits_per_value * d + 7) // 8 + extra_bytes
    if arr.ndim != 1:
        raise MalformedPayload(field, f"packed bits must be 1-D, got shape {arr.shape}")
    if arr.size < expected:
        raise MalformedPayload(field, f"truncated bit payload: {arr.size} bytes, expected "
                                      f"{expected} for {d} values x {bits_per_value} bit(s)")
    if arr.size > expected:
        raise MalformedPayload(field, f"wrong length: {arr.size} bytes, expected {expected} "
                                      f"for {d} values x {bits_per_value} bit(s)")
    return arr


def check_payload(arrays: Mapping[str, Any], codec: Codec, d: int,
                  prefix: str = "") -> dict[str, np.ndarray]:
    """Check ``arrays`` (dict of ndarrays or an ``ArrayRecord``) against ``codec.layout(d)``:
    same keys, dtypes, element counts (a short uint8 stream is reported as truncated), finite
    floats. Returns the arrays as ndarrays, ready for ``codec.decode``."""
    layout = codec.layout(d)
    where = f"{prefix}." if prefix else ""
    keys = set(arrays.keys())
    missing = [k for k in layout if k not in keys]
    if missing:
        raise MalformedPayload(f"{where}{missing[0]}", f"missing (codec {codec.name} "
                                                       f"expects keys {sorted(layout)})")
    extra = sorted(keys - set(layout))
    if extra:
        raise MalformedPayload(f"{where}{extra[0]}", f"unexpected key for codec {codec.name} "
                                                     f"(expects {sorted(layout)})")
    out = {}
    for key, (dtype, count) in layout.items():
        field = f"{where}{key}"
        arr = check_array(field, arrays[key], dtype=dtype)
        if arr.ndim != 1:
            raise MalformedPayload(field, f"must be 1-D, got shape {arr.shape}")
        if arr.size != count:
            what = "truncated bit payload" if dtype == np.uint8 and arr.size < count \
                else "wrong length"
            raise MalformedPayload(field, f"{what}: {arr.size} elements, expected {count} "
                                          f"for d={d} with codec {codec.name}")
        out[key] = arr
    return out


def decode_checked(arrays: Mapping[str, Any], codec: Codec, shape: Shape,
                   prefix: str = "") -> np.ndarray:
    """:func:`check_payload`, then ``codec.decode``; a decoding error (e.g. an integer code
    out of range) or a non-finite decoded value also raises :class:`MalformedPayload`."""
    d = shape_size(shape)
    checked = check_payload(arrays, codec, d, prefix)
    field = prefix or codec.name
    try:
        out = codec.decode(checked, as_shape(shape))
    except (ValueError, IndexError) as err:
        raise MalformedPayload(field, f"cannot be decoded by codec {codec.name} ({err})") \
            from err
    return check_array(field, out, finite=True)
