"""Codecs round-trip exactly and occupy exactly the advertised number of bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedsim.comm import FloatCodec, IntCodec, ScaledSignCodec, SignCodec, get_codec
from fedsim.comm.float_codec import bf16_bits_to_float32, float32_to_bf16_bits
from fedsim.comm.int_codec import bits_for_bound

SIZES = st.integers(min_value=0, max_value=300)
FLOATS32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


def _payload_nbytes(arrays: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays.values())


# --- sign ---------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, SIZES, elements=FLOATS32))
def test_sign_round_trip_is_exact_and_ceil_d_over_8_bytes(x: np.ndarray) -> None:
    codec = SignCodec()
    enc = codec.encode(x)
    assert list(enc) == ["bits"] and enc["bits"].dtype == np.uint8
    assert _payload_nbytes(enc) == math.ceil(x.size / 8) == codec.payload_bytes(x.size)
    assert codec.payload_bits(x.size) == x.size
    out = codec.decode(enc, x.size)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.where(x >= 0, 1.0, -1.0))


@pytest.mark.parametrize("d", [1, 7, 8, 9, 15, 16, 17, 1001])
def test_sign_edge_values_and_zero_convention(d: int) -> None:
    edge = np.array([0.0, -0.0, 1e-45, -1e-45, np.finfo(np.float32).max,
                     -np.finfo(np.float32).max, np.inf, -np.inf], dtype=np.float32)
    x = np.resize(edge, d)
    out = SignCodec().decode(SignCodec().encode(x), d)
    expected = np.resize(np.array([1, 1, 1, -1, 1, -1, 1, -1], dtype=np.float32), d)
    np.testing.assert_array_equal(out, expected)  # sign(0) = sign(-0.0) = +1, never 0
    # padding bits of the last byte are zero, as np.packbits writes them
    bits = SignCodec().encode(np.ones(d, np.float32))["bits"]
    assert np.unpackbits(bits)[d:].sum() == 0


def test_sign_decode_keeps_shape_and_accepts_torch() -> None:
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    out = SignCodec().decode(SignCodec().encode(x), (3, 5))
    assert out.shape == (3, 5)
    np.testing.assert_array_equal(out, np.where(x.numpy() >= 0, 1.0, -1.0))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, SIZES, elements=st.floats(-(2.0**100), 2.0**100, width=32)))
def test_scaled_sign_one_array_with_mean_abs_scale(x: np.ndarray) -> None:
    codec = ScaledSignCodec()
    enc = codec.encode(x)
    assert list(enc) == ["bits"]
    assert _payload_nbytes(enc) == math.ceil(x.size / 8) + 4 == codec.payload_bytes(x.size)
    scale = np.float32(np.mean(np.abs(x), dtype=np.float64)) if x.size else np.float32(0)
    assert codec.scale(enc) == float(scale)
    np.testing.assert_array_equal(codec.decode(enc, x.size),
                                  np.where(x >= 0, 1.0, -1.0).astype(np.float32) * scale)


# --- k-bit integers -------------------------------------------------------------------------

@st.composite
def int_vectors(draw: st.DrawFn) -> tuple[int, np.ndarray]:
    bound = draw(st.one_of(st.integers(0, 40), st.sampled_from([127, 128, 32767])))
    d = draw(SIZES)
    x = draw(hnp.arrays(np.int64, d, elements=st.integers(-bound, bound)))
    return bound, x


@settings(max_examples=200, deadline=None)
@given(int_vectors())
def test_int_round_trip_exact_and_ceil_kd_over_8_bytes(case: tuple[int, np.ndarray]) -> None:
    bound, x = case
    codec = IntCodec(bound)
    k = max(1, math.ceil(math.log2(2 * bound + 1)))
    assert codec.bits == k == bits_for_bound(bound)
    for inp in (x, x.astype(np.float32)):  # integer-valued floats (FedLion's Δ) too
        enc = codec.encode(inp)
        assert list(enc) == ["packed"] and enc["packed"].dtype == np.uint8
        assert _payload_nbytes(enc) == math.ceil(k * x.size / 8) == codec.payload_bytes(x.size)
        np.testing.assert_array_equal(codec.decode(enc, x.size), x.astype(np.float32))


@pytest.mark.parametrize("k", range(1, 17))
@pytest.mark.parametrize("d", [1, 3, 8, 13, 64, 257])
def test_int_every_k_with_extreme_values(k: int, d: int) -> None:
    codec = IntCodec.for_bits(k)
    assert codec.bits == k
    lo, hi = -codec.bound, codec.bound
    x = np.resize(np.array([lo, hi, 0, lo + 1 if hi > 0 else 0, hi - 1 if hi > 0 else 0]), d)
    enc = codec.encode(x)
    assert enc["packed"].nbytes == math.ceil(k * d / 8)
    np.testing.assert_array_equal(codec.decode(enc, d), x.astype(np.float32))


@pytest.mark.parametrize(("E", "k"), [(1, 2), (2, 3), (3, 3), (4, 4), (20, 6), (127, 8)])
def test_fedlion_bits_are_ceil_log2_2e_plus_1(E: int, k: int) -> None:  # noqa: N803
    assert IntCodec(E).bits == k


def test_int_known_bit_layout_lsb_first() -> None:
    # bound 3 -> k = 3, codes v+3: [-3, 3] -> [0, 6] = 0b000, 0b110 -> stream 000 011 (LSB first)
    enc = IntCodec(3).encode(np.array([-3, 3]))
    assert enc["packed"].tolist() == [0b00110000]


def test_int_rejects_out_of_range_and_non_finite() -> None:
    codec = IntCodec(2)
    with pytest.raises(ValueError, match="exceed"):
        codec.encode(np.array([0, 3]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        codec.encode(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="cannot hold"):
        IntCodec(5, bits=3)
    with pytest.raises(ValueError, match="1..16"):
        IntCodec(40000)
    # code 7 = 0b111 is not a valid code for [-2, 2] (codes 0..4)
    with pytest.raises(ValueError, match="outside"):
        codec.decode({"packed": np.array([0b111], np.uint8)}, 1)


def test_int_vectorised_speed_d_one_million() -> None:
    import time

    x = np.random.default_rng(0).integers(-20, 21, 1_000_000)
    codec = IntCodec(20)
    t = time.perf_counter()
    out = codec.decode(codec.encode(x), x.size)
    assert time.perf_counter() - t < 2.0  # a Python loop over coordinates would take ~10 s
    np.testing.assert_array_equal(out, x)


# --- floats ---------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, SIZES, elements=FLOATS32))
def test_fp32_identity(x: np.ndarray) -> None:
    codec = FloatCodec("fp32")
    enc = codec.encode(x)
    assert _payload_nbytes(enc) == 4 * x.size == codec.payload_bits(x.size) // 8
    np.testing.assert_array_equal(codec.decode(enc, x.size), x)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, SIZES, elements=FLOATS32))
def test_fp16_is_nearest_half_and_exact_on_its_outputs(x: np.ndarray) -> None:
    codec = FloatCodec("fp16")
    enc = codec.encode(x)
    assert _payload_nbytes(enc) == 2 * x.size == codec.payload_bytes(x.size)
    out = codec.decode(enc, x.size)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(codec.decode(codec.encode(out), x.size), out)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, SIZES, elements=st.floats(width=32)))
def test_bf16_matches_torch_round_to_nearest_even(x: np.ndarray) -> None:
    codec = FloatCodec("bf16")
    enc = codec.encode(x)
    assert enc["values"].dtype == np.uint16
    assert _payload_nbytes(enc) == 2 * x.size == codec.payload_bytes(x.size)
    out = codec.decode(enc, x.size)
    ref = torch.from_numpy(x.copy()).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(out, ref)  # NaN positions compare equal
    np.testing.assert_array_equal(codec.encode(out)["values"], enc["values"])


def test_bf16_ties_go_to_even() -> None:
    # 1 + 2^-8 lies halfway between bf16 1.0 and 1 + 2^-7: ties to even -> 1.0
    # 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: ties to even -> 1 + 2^-6
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8)], np.float32)
    out = bf16_bits_to_float32(float32_to_bf16_bits(x))
    np.testing.assert_array_equal(out, np.array([1.0, 1 + 2**-6, -1.0], np.float32))


def test_get_codec_by_name() -> None:
    assert isinstance(get_codec("sign"), SignCodec)
    assert isinstance(get_codec("scaled-sign"), ScaledSignCodec)
    assert get_codec("int3").bits == 3 and get_codec("int3").bound == 3
    assert get_codec("int-e20").bits == 6 and get_codec("int-e20").bound == 20
    assert get_codec("bf16").payload_bits(10) == 160
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec("int99x")


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 16), d=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_int_blocks_join_exactly(k: int, d: int, seed: int) -> None:
    """Packing in blocks (2^20 coordinates in production, 8 or 16 here) changes no bit."""
    from fedsim.comm import int_codec

    codes = np.random.default_rng(seed).integers(0, 2**k, d)
    whole = int_codec.pack_uint(codes, k)
    saved = int_codec.BLOCK
    try:
        for block in (8, 16):
            int_codec.BLOCK = block
            packed = int_codec.pack_uint(codes, k)
            np.testing.assert_array_equal(packed, whole)
            np.testing.assert_array_equal(int_codec.unpack_uint(packed, k, d), codes)
    finally:
        int_codec.BLOCK = saved
