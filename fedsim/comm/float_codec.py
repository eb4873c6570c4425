"""Full-precision and half-precision floats, for state such as FedLion's momentum μ
(FedLion, arXiv 2402.09941: μ travels as 32 bits per coordinate; fp16/bf16 halve that).

Wire format: one array ``"values"``:

- ``fp32``: ``float32``, identity (exact round trip), 32 bits per coordinate.
- ``fp16``: IEEE binary16 (``np.float16``, round-to-nearest-even); values beyond ±65504
  become ±Inf, which :mod:`fedsim.comm.validate` then rejects. 16 bits per coordinate.
- ``bf16``: bfloat16 stored as ``uint16`` bit patterns (the top 16 bits of the float32),
  rounded to nearest, ties to even (the rounding of ``torch.bfloat16``); NaN stays a quiet NaN.
  8 exponent bits, so the float32 range is kept. 16 bits per coordinate.

In every format ``decode(encode(x))`` is the nearest representable value of ``x`` and
``encode(decode(encode(x))) == encode(x)`` (the codec is exact on its own outputs).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedsim.comm.codec import Codec, Shape, as_shape, flat, shape_size

VALUES_KEY = "values"
FLOAT_FORMATS = ("fp32", "fp16", "bf16")
_STORAGE = {"fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16),
            "bf16": np.dtype(np.uint16)}


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``uint16``) of float32 ``x``, round-to-nearest-even."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    u = f.view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16
    quiet_nan = (u >> 16) | np.uint32(0x0040)
    return np.where(np.isnan(f), quiet_nan, rounded).astype(np.uint16)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    b = np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16
    return b.view(np.float32)


class FloatCodec(Codec):
    """``fp32`` (identity), ``fp16`` or ``bf16`` (as ``uint16`` bit patterns)."""

    def __init__(self, fmt: str = "fp32") -> None:
        if fmt not in FLOAT_FORMATS:
            raise ValueError(f"unknown float format {fmt!r}; expected one of {FLOAT_FORMATS}")
        self.fmt = fmt
        self.name = fmt

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        v = flat(x)
        if self.fmt == "fp32":
            return {VALUES_KEY: v.astype(np.float32)}
        if self.fmt == "fp16":
            with np.errstate(over="ignore"):
                return {VALUES_KEY: v.astype(np.float16)}
        return {VALUES_KEY: float32_to_bf16_bits(v.astype(np.float32, copy=False))}

    def decode(self, arrays: Mapping[str, np.ndarray], shape: Shape) -> np.ndarray:
        raw = np.asarray(arrays[VALUES_KEY]).reshape(-1)
        out = bf16_bits_to_float32(raw) if self.fmt == "bf16" else raw.astype(np.float32)
        if out.size != shape_size(shape):
            raise ValueError(f"{out.size} values for shape {shape}")
        return out.reshape(as_shape(shape))

    def payload_bits(self, d: int) -> int:
        return 8 * _STORAGE[self.fmt].itemsize * int(d)

    def layout(self, d: int) -> dict[str, tuple[np.dtype, int]]:
        return {VALUES_KEY: (_STORAGE[self.fmt], int(d))}

    def __repr__(self) -> str:
        return f"FloatCodec({self.fmt!r})"


def fp32() -> FloatCodec:
    """Codec ``fp32``: 32 bits per coordinate."""
    return FloatCodec("fp32")


def fp16() -> FloatCodec:
    """Codec ``fp16``: IEEE half precision."""
    return FloatCodec("fp16")


def bf16() -> FloatCodec:
    """Codec ``bf16``: bfloat16 (float32's exponent, 8-bit mantissa)."""
    return FloatCodec("bf16")
