"""Uplink/downlink compression and byte accounting, independent of any algorithm.

- ``codec``: the :class:`~fedsim.comm.codec.Codec` contract (encode, decode, payload bits).
- ``sign_codec``: 1 bit per coordinate (SignSGD, z-SignFedAvg, EF-SignSGD, stochastic sign).
- ``int_codec``: k-bit packing of small integers in [-L, L] (FedLion's integer Δ).
- ``float_codec``: fp32 / fp16 / bf16 for full-precision state such as momentum.
- ``noise``: z-distribution samplers and constants for z-SignFedAvg.
- ``npy``: Flower ``Array`` <-> numpy/torch with cached npy headers (same bytes as Flower).
- ``validate``: checks on replies; raises :class:`~fedsim.comm.validate.MalformedPayload`.
- ``meter``: :class:`~fedsim.comm.meter.CommMeter`, bytes that actually crossed the Grid.
"""

from fedsim.comm.codec import Codec, get_codec
from fedsim.comm.float_codec import FloatCodec
from fedsim.comm.int_codec import IntCodec
from fedsim.comm.meter import CommMeter, message_wire_bytes
from fedsim.comm.sign_codec import ScaledSignCodec, SignCodec
from fedsim.comm.validate import MalformedPayload, check_payload, decode_checked

__all__ = [
    "Codec",
    "CommMeter",
    "FloatCodec",
    "IntCodec",
    "MalformedPayload",
    "ScaledSignCodec",
    "SignCodec",
    "check_payload",
    "decode_checked",
    "get_codec",
    "message_wire_bytes",
]
