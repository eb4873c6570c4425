"""Malformed replies raise MalformedPayload naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from fedsim.comm import (
    FloatCodec,
    IntCodec,
    MalformedPayload,
    ScaledSignCodec,
    SignCodec,
    check_payload,
    decode_checked,
)
from fedsim.comm.validate import check_array, check_packed_bits

D = 21


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def test_valid_payloads_pass_as_dicts_and_array_records() -> None:
    x = np.linspace(-3, 3, D).astype(np.float32)
    for codec in (SignCodec(), ScaledSignCodec(), IntCodec(3), FloatCodec("fp32"),
                  FloatCodec("fp16"), FloatCodec("bf16")):
        enc = codec.encode(np.rint(x) if isinstance(codec, IntCodec) else x)
        for payload in (enc, _record(enc)):
            out = decode_checked(payload, codec, D, prefix="arrays")
            np.testing.assert_array_equal(out, codec.decode(enc, D))


def test_truncated_sign_bits() -> None:
    bits = SignCodec().encode(np.ones(D))["bits"][:-1]
    with pytest.raises(MalformedPayload, match=r"'arrays.bits'.*truncated bit payload") as err:
        decode_checked(_record({"bits": bits}), SignCodec(), D, prefix="arrays")
    assert err.value.field == "arrays.bits"
    with pytest.raises(MalformedPayload, match=r"'signs'.*truncated"):
        check_packed_bits("signs", bits, D)


def test_truncated_kbit_payload() -> None:
    packed = IntCodec(20).encode(np.zeros(D))["packed"][:-2]
    with pytest.raises(MalformedPayload, match=r"'delta.packed'.*truncated"):
        decode_checked({"packed": packed}, IntCodec(20), D, prefix="delta")
    with pytest.raises(MalformedPayload, match=r"'delta'.*truncated.*6 bit"):
        check_packed_bits("delta", packed, D, bits_per_value=6)


def test_wrong_length() -> None:
    with pytest.raises(MalformedPayload, match=r"'momentum.values'.*wrong length: 20 elements"):
        decode_checked({"values": np.zeros(D - 1, np.float32)}, FloatCodec("fp32"), D,
                       prefix="momentum")
    too_long = np.zeros(4, np.uint8)  # 21 signs need 3 bytes
    with pytest.raises(MalformedPayload, match=r"'bits'.*wrong length: 4"):
        check_payload({"bits": too_long}, SignCodec(), D)
    with pytest.raises(MalformedPayload, match=r"'bits'.*wrong length: 4 bytes"):
        check_packed_bits("bits", too_long, D)


def test_wrong_dtype() -> None:
    with pytest.raises(MalformedPayload, match=r"'arrays.bits'.*dtype int8, expected uint8"):
        decode_checked({"bits": np.zeros(3, np.int8)}, SignCodec(), D, prefix="arrays")
    with pytest.raises(MalformedPayload, match=r"'arrays.values'.*dtype float64"):
        decode_checked(_record({"values": np.zeros(D)}), FloatCodec("fp32"), D,
                       prefix="arrays")


@pytest.mark.parametrize(("bad", "what"), [(np.nan, "1 NaN, 0 Inf"), (np.inf, "0 NaN, 1 Inf"),
                                           (-np.inf, "0 NaN, 1 Inf")])
def test_nan_and_inf(bad: float, what: str) -> None:
    x = np.zeros(D, np.float32)
    x[5] = bad
    with pytest.raises(MalformedPayload, match=rf"'momentum.values'.*non-finite.*{what}"):
        decode_checked({"values": x}, FloatCodec("fp32"), D, prefix="momentum")
    with pytest.raises(MalformedPayload, match=r"'m'.*non-finite"):
        check_array("m", x)


def test_non_finite_after_decoding() -> None:
    # fp16 Inf pattern, bf16 NaN pattern, and a scaled-sign scale of Inf are all rejected
    with pytest.raises(MalformedPayload, match=r"'mom'.*non-finite"):
        decode_checked({"values": np.full(D, 0x7FC0, np.uint16)}, FloatCodec("bf16"), D,
                       prefix="mom")
    enc = ScaledSignCodec().encode(np.ones(D), scale=float("inf"))
    with pytest.raises(MalformedPayload, match=r"'update'.*non-finite"):
        decode_checked(enc, ScaledSignCodec(), D, prefix="update")


def test_missing_and_extra_keys_and_bad_codes() -> None:
    with pytest.raises(MalformedPayload, match=r"'arrays.bits'.*missing"):
        check_payload({"signs": np.zeros(3, np.uint8)}, SignCodec(), D, prefix="arrays")
    with pytest.raises(MalformedPayload, match=r"'arrays.extra'.*unexpected key"):
        check_payload({"bits": np.zeros(3, np.uint8), "extra": np.zeros(1)}, SignCodec(), D,
                      prefix="arrays")
    # k = 3 for bound 2 but codes 5..7 are not valid levels
    with pytest.raises(MalformedPayload, match=r"'delta'.*cannot be decoded"):
        decode_checked({"packed": np.full(8, 0xFF, np.uint8)}, IntCodec(2), D, prefix="delta")


def test_unreadable_array_and_wrong_shape() -> None:
    odd = Array(dtype="float32", shape=(3,), stype="custom", data=b"\x00" * 12)
    with pytest.raises(MalformedPayload, match=r"'arrays.values'.*cannot be read"):
        check_payload(ArrayRecord({"values": odd}), FloatCodec("fp32"), 3, prefix="arrays")
    with pytest.raises(MalformedPayload, match=r"'values'.*must be 1-D"):
        check_payload({"values": np.zeros((3, 7), np.float32)}, FloatCodec("fp32"), D)


def test_is_a_value_error_with_field_and_reason() -> None:
    err = MalformedPayload("arrays.bits", "truncated bit payload")
    assert isinstance(err, ValueError)
    assert (err.field, err.reason) == ("arrays.bits", "truncated bit payload")
    assert str(err) == "malformed payload field 'arrays.bits': truncated bit payload"
