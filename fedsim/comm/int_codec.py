"""k-bit packing of small integers in ``[-L, L]``: FedLion's integer update Δ.

FedLion (Tang et al., "FedLion: Faster Adaptive Federated Optimization with Fewer
Communication", ICASSP 2024, arXiv:2402.09941, Algorithm 1) uploads
``Δ_i = (x − y_i)/γ``, a sum of E Lion signs, so with weight decay 0 every coordinate is an
integer in ``[-E, E]``. Because ``torch.sign(0) = 0``, all ``2E+1`` levels can occur, hence
``k = ceil(log2(2E+1))`` bits per coordinate (3 bits at E=2, 6 bits at E=20).

Wire format: one ``uint8`` array ``"packed"``. Each value ``v`` is stored as the unsigned code
``v + L`` in ``k`` bits, least significant bit first, codes laid end to end (coordinate ``i``
occupies stream bits ``[i·k, (i+1)·k)``), and the bit stream is packed with
``np.packbits(..., bitorder="little")``: ``ceil(k·d/8)`` bytes, the tail zero-padded.
Packing and unpacking are vectorised (a ``d × k`` bit matrix per block of 2^20 coordinates),
no Python loop over coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from fedsim.comm.codec import Codec, CodecFamily, Shape, as_shape, flat, shape_size

PACKED_KEY = "packed"
MAX_BITS = 16


def bits_for_bound(bound: int) -> int:
    """``k = ceil(log2(2L+1))`` bits for integers in ``[-L, L]`` (at least 1)."""
    if bound < 0:
        raise ValueError(f"bound must be >= 0, got {bound}")
    return max(1, math.ceil(math.log2(2 * bound + 1)))


#: coordinates per block (a multiple of 8, so blocks end on byte boundaries for every k);
#: bounds the temporary bit matrices to a few tens of MB whatever d is
BLOCK = 1 << 20


def _pack_block(codes: np.ndarray, k: int) -> np.ndarray:
    width = 1 if k <= 8 else 2
    as_bytes = codes.astype("<u2" if width == 2 else np.uint8).view(np.uint8).reshape(-1, width)
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :k]  # d x k, LSB first
    return np.packbits(bits.reshape(-1), bitorder="little")


def _unpack_block(raw: np.ndarray, k: int, d: int) -> np.ndarray:
    bits = np.unpackbits(raw, count=k * d, bitorder="little").reshape(d, k)
    weights = np.uint32(1) << np.arange(k, dtype=np.uint32)
    return bits.astype(np.uint32) @ weights


def pack_uint(codes: np.ndarray, k: int) -> np.ndarray:
    """Pack unsigned ``codes`` (each < 2**k) into ``ceil(k·d/8)`` bytes, LSB first."""
    c = np.asarray(codes).reshape(-1)
    if c.size == 0:
        return np.zeros(0, np.uint8)
    return np.concatenate([_pack_block(c[i:i + BLOCK], k) for i in range(0, c.size, BLOCK)])


def unpack_uint(packed: np.ndarray, k: int, d: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: ``d`` unsigned ``k``-bit codes as ``uint32``."""
    raw = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if d == 0:
        return np.zeros(0, np.uint32)
    step = BLOCK * k // 8  # bytes per full block
    return np.concatenate([_unpack_block(raw[j * step:(j + 1) * step], k, min(BLOCK, d - i))
                           for j, i in enumerate(range(0, d, BLOCK))])


class IntCodec(Codec):
    """Integers in ``[-bound, bound]`` in ``k = ceil(log2(2·bound+1))`` bits each (1 <= k <= 16).

    ``encode`` rounds to the nearest integer (``np.rint``; exact for integer-valued input such as
    a float32 Δ that is a sum of ±1 signs) and raises ``ValueError`` on NaN/Inf or a value
    outside ``[-bound, bound]``. ``decode`` returns the integers as ``float32`` (exact for
    |v| < 2**24) and raises ``ValueError`` on a code above ``2·bound``.
    """

    def __init__(self, bound: int, bits: int | None = None) -> None:
        need = bits_for_bound(int(bound))
        k = need if bits is None else int(bits)
        if not 1 <= k <= MAX_BITS:
            raise ValueError(f"bits must be in 1..{MAX_BITS}, got {k} (bound {bound})")
        if k < need:
            raise ValueError(f"{k} bits cannot hold [-{bound}, {bound}] ({need} needed)")
        self.bound = int(bound)
        self.bits = k
        self.name = f"int{k}"

    @classmethod
    def for_bits(cls, k: int) -> IntCodec:
        """The symmetric range that ``k`` bits hold: ``[-(2**(k-1) - 1), 2**(k-1) - 1]``."""
        if not 1 <= k <= MAX_BITS:
            raise ValueError(f"bits must be in 1..{MAX_BITS}, got {k}")
        return cls(bound=(2 ** (k - 1)) - 1 if k > 1 else 0, bits=k)

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        v = flat(x)
        if v.dtype.kind == "f":
            if not np.all(np.isfinite(v)):
                raise ValueError("cannot encode NaN or Inf as an integer")
            v = np.rint(v)
        v = v.astype(np.int64, copy=False)
        if v.size and (v.min() < -self.bound or v.max() > self.bound):
            raise ValueError(f"values in [{v.min()}, {v.max()}] exceed the codec range "
                             f"[-{self.bound}, {self.bound}]")
        return {PACKED_KEY: pack_uint(v + self.bound, self.bits)}

    def decode(self, arrays: Mapping[str, np.ndarray], shape: Shape) -> np.ndarray:
        d = shape_size(shape)
        codes = unpack_uint(arrays[PACKED_KEY], self.bits, d)
        if d and codes.max() > 2 * self.bound:
            raise ValueError(f"code {int(codes.max())} is outside 0..{2 * self.bound} "
                             f"for range [-{self.bound}, {self.bound}]")
        out = codes.astype(np.int64) - self.bound
        return out.astype(np.float32).reshape(as_shape(shape))

    def payload_bits(self, d: int) -> int:
        return self.bits * int(d)

    def layout(self, d: int) -> dict[str, tuple[np.dtype, int]]:
        return {PACKED_KEY: (np.dtype(np.uint8), (self.bits * int(d) + 7) // 8)}

    def __repr__(self) -> str:
        return f"IntCodec(bound={self.bound}, bits={self.bits})"


def _with_bound(bound: int) -> IntCodec:
    return IntCodec(bound=bound)


BITS_FAMILY = CodecFamily(IntCodec.for_bits, "k", "int<k>: k-bit integers in "
                          "[-(2^(k-1)-1), 2^(k-1)-1], e.g. int3")
BOUND_FAMILY = CodecFamily(_with_bound, "E", "int-e<E>: integers in [-E, E] with "
                           "ceil(log2(2E+1)) bits, e.g. int-e20")
