"""The codec contract: how one flat update is turned into arrays for an ``ArrayRecord`` and back.

A codec is one small object with three jobs (STYLE.md, "Compression is a stage with its own
bookkeeping"): :meth:`Codec.encode` a vector into a few NumPy arrays, :meth:`Codec.decode` them
back, and say how many payload bits a vector of ``d`` coordinates costs. It knows nothing about
the algorithm that uses it, nor about Flower; the arrays it returns go into an ``ArrayRecord``
unchanged (``ArrayRecord({k: Array(v) for k, v in codec.encode(x).items()})``).

Each ``Array`` costs about 280 B of header (docs/design-notes.md#header-cost-per-array), so every
codec packs its payload into a single array per call (plus nothing else).

Conventions shared by all codecs:

- ``encode`` flattens its input (C order); ``decode(arrays, shape)`` returns ``float32`` of
  ``shape`` (an ``int`` d or a tuple whose product is d).
- ``payload_bits(d)`` is the information content the algorithm pays for (d for signs, k·d for
  k-bit integers, 32·d for fp32); ``payload_bytes(d)`` is what the encoded arrays occupy,
  ``sum(a.nbytes for a in encode(x).values())``, i.e. the bits rounded up to whole bytes plus any
  side information.
- codecs are found by name in ``CODECS`` (entry point group ``fedsim.codecs``); this
  module imports none of them.
- ``layout(d)`` names each array with its dtype and element count, which is what
  :func:`fedsim.comm.validate.check_payload` checks replies against.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsim.registry import Registry, RegistryError, is_dotted

Shape = int | tuple[int, ...]


def shape_size(shape: Shape) -> int:
    """Number of elements of ``shape`` (an int d or a tuple)."""
    if isinstance(shape, (int, np.integer)):
        return int(shape)
    return int(math.prod(shape))


def as_shape(shape: Shape) -> tuple[int, ...]:
    """``shape`` as a tuple (an int d becomes ``(d,)``)."""
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def flat(x: Any) -> np.ndarray:
    """A 1-D view/copy of ``x`` (NumPy array, list or CPU torch tensor)."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1)


class Codec(ABC):
    """Encode a vector into arrays, decode them back, and report the payload size."""

    #: short name used in configs and metrics, e.g. ``"sign"``, ``"int3"``, ``"bf16"``
    name: str = "codec"

    @abstractmethod
    def encode(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Arrays (as few as possible, usually one) that carry ``x`` flattened."""

    @abstractmethod
    def decode(self, arrays: Mapping[str, np.ndarray], shape: Shape) -> np.ndarray:
        """The ``float32`` vector of ``shape`` that ``arrays`` carry."""

    @abstractmethod
    def payload_bits(self, d: int) -> int:
        """Information bits for ``d`` coordinates (before rounding up to bytes)."""

    @abstractmethod
    def layout(self, d: int) -> dict[str, tuple[np.dtype, int]]:
        """``{key: (dtype, number of elements)}`` of ``encode``'s output for ``d`` coordinates."""

    def payload_bytes(self, d: int) -> int:
        """Bytes of the encoded arrays for ``d`` coordinates (``sum(a.nbytes)``)."""
        return sum(np.dtype(dt).itemsize * n for dt, n in self.layout(d).values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


@dataclass(frozen=True)
class CodecFamily:
    """Codecs named ``<family><integer>``: registered as ``int``, ``"int3"`` is
    ``build(3)``. ``parameter`` says what the integer means (for messages)."""

    build: Callable[[int], Codec]
    parameter: str
    summary: str = ""


def _as_codec_maker(obj: Any) -> Callable[[], Codec] | CodecFamily:
    """A codec class or zero-argument factory, or a :class:`CodecFamily`."""
    if isinstance(obj, CodecFamily) or callable(obj):
        return obj
    raise TypeError(f"expected a Codec subclass, a factory () -> Codec or a CodecFamily, got "
                    f"{type(obj).__name__}")


CODECS: Registry[Callable[[], Codec] | CodecFamily] = Registry(
    "codec", "fedsim.codecs", check=_as_codec_maker)
_FAMILY_NAME = re.compile(r"([a-z][a-z0-9-]*?[a-z-])(\d+)")


def codec_names() -> list[str]:
    """Codec names as users write them (a family ``int`` shows as ``int<k>``)."""
    shown = []
    for name in CODECS.names():
        maker = CODECS.get(name)
        shown.append(f"{name}<{maker.parameter}>" if isinstance(maker, CodecFamily) else name)
    return shown


def get_codec(name: str) -> Codec:
    """A codec by name (``CODECS``, entry point group ``fedsim.codecs``), or by reference.

    ``"sign"`` (1 bit), ``"scaled-sign"`` (1 bit + one float32 scale), ``"int<k>"`` (k-bit
    integers in ``[-(2^(k-1)-1), 2^(k-1)-1]``, e.g. ``"int3"`` for |Δ| <= 3),
    ``"int-e<E>"`` (integers in ``[-E, E]`` with ``k = ceil(log2(2E+1))``, e.g. ``"int-e20"``),
    ``"fp32"``, ``"fp16"``, ``"bf16"``. A name that is not registered but ends in an integer
    (``int3``) is built by the family registered under the rest (``int``).
    """
    key = name.strip()
    key = key if is_dotted(key) else key.lower()
    maker: Any = None
    number = None
    if key in CODECS:
        maker = CODECS.get(key)
    else:
        match = _FAMILY_NAME.fullmatch(key)
        if match and match.group(1) in CODECS:
            maker, number = CODECS.get(match.group(1)), int(match.group(2))
    if isinstance(maker, CodecFamily) and number is not None:
        codec = maker.build(number)
    elif maker is not None and not isinstance(maker, CodecFamily) and number is None:
        codec = maker()
    else:
        allowed = ", ".join(codec_names())
        raise RegistryError(f"unknown codec {name!r}; expected {allowed}", allowed)
    if not isinstance(codec, Codec):
        raise RegistryError(f"codec {name!r} built a {type(codec).__name__}, not a Codec",
                            "a fedsim.comm.codec.Codec")
    return codec
