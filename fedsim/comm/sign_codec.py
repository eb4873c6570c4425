"""1-bit sign compression: SignSGD (Bernstein et al. 2018, arXiv:1802.04434), z-SignFedAvg's
``sign(Δ + σξ)`` (Tang et al., AAAI 2024, arXiv:2302.02589),
stochastic sign (Jin et al. 2020) and, with a scale, EF-SignSGD (Karimireddy et al. 2019,
arXiv:1901.09847: ``‖p‖₁/d · sign(p)``).

Wire format: one ``uint8`` array ``"bits"`` = ``np.packbits(x >= 0)`` (big bit order, the last
byte zero-padded), i.e. ``ceil(d/8)`` bytes. :class:`ScaledSignCodec` appends the float32 scale
as 4 more bytes of the same array (one Array, not two: each Array costs ~280 B of header).

**sign(0) convention:** ``sign(x) = +1 if x >= 0 else -1``, so 0 and -0.0 encode as +1 and the
decoded vector is always exactly ±1 (no zeros). This is the convention of
``np.packbits(grad >= 0)``. It differs from ``torch.sign``/
``np.sign``, which return 0 at 0: a caller that needs a three-valued sign must use
:class:`fedsim.comm.int_codec.IntCodec` with bound 1 (2 bits). NaN encodes as -1 (``NaN >= 0``
is false); clients should not send NaN updates.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedsim.comm.codec import Codec, Shape, as_shape, flat, shape_size

BITS_KEY = "bits"


def pack_signs(x: np.ndarray) -> np.ndarray:
    """``np.packbits(x >= 0)`` of ``x`` flattened: ``ceil(d/8)`` bytes, bit 1 means +1."""
    return np.packbits(flat(x) >= 0)


def unpack_signs(bits: np.ndarray, d: int) -> np.ndarray:
    """The ``float32`` ±1 vector of length ``d`` carried by ``bits``."""
    b = np.unpackbits(np.asarray(bits, dtype=np.uint8).reshape(-1), count=d)
    return b.astype(np.float32) * 2.0 - 1.0


class SignCodec(Codec):
    """1 bit per coordinate; ``decode(encode(x)) == where(x >= 0, 1, -1)`` exactly."""

    name = "sign"

    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {BITS_KEY: pack_signs(x)}

    def decode(self, arrays: Mapping[str, np.ndarray], shape: Shape) -> np.ndarray:
        return unpack_signs(arrays[BITS_KEY], shape_size(shape)).reshape(as_shape(shape))

    def payload_bits(self, d: int) -> int:
        return int(d)

    def layout(self, d: int) -> dict[str, tuple[np.dtype, int]]:
        return {BITS_KEY: (np.dtype(np.uint8), (int(d) + 7) // 8)}


class ScaledSignCodec(Codec):
    """``scale · sign(x)`` with ``scale = mean|x|`` (EF-SignSGD), or a scale given to encode.

    Wire format: ``"bits"`` = packed signs followed by the 4 bytes of the float32 scale
    (little-endian): ``ceil(d/8) + 4`` bytes in one array.
    """

    name = "scaled-sign"

    def encode(self, x: np.ndarray, scale: float | None = None) -> dict[str, np.ndarray]:
        v = flat(x)
        if scale is None:
            scale = float(np.mean(np.abs(v), dtype=np.float64)) if v.size else 0.0
        tail = np.array([scale], dtype="<f4").view(np.uint8)
        return {BITS_KEY: np.concatenate([pack_signs(v), tail])}

    def decode(self, arrays: Mapping[str, np.ndarray], shape: Shape) -> np.ndarray:
        d = shape_size(shape)
        raw = np.asarray(arrays[BITS_KEY], dtype=np.uint8).reshape(-1)
        scale = self.scale(arrays)
        return (unpack_signs(raw[:-4], d) * np.float32(scale)).reshape(as_shape(shape))

    @staticmethod
    def scale(arrays: Mapping[str, np.ndarray]) -> float:
        """The float32 scale carried in the last 4 bytes."""
        raw = np.asarray(arrays[BITS_KEY], dtype=np.uint8).reshape(-1)
        return float(raw[-4:].copy().view("<f4")[0])

    def payload_bits(self, d: int) -> int:
        return int(d) + 32

    def layout(self, d: int) -> dict[str, tuple[np.dtype, int]]:
        return {BITS_KEY: (np.dtype(np.uint8), (int(d) + 7) // 8 + 4)}
