"""Every payload a strategy sends round-trips exactly through a Flower ``ArrayRecord`` (the
codecs themselves are tested in tests/comm): integer Delta, signs, scaled signs, fp32, and
bf16/fp16 exactly on their own outputs."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from fedsim.comm.float_codec import FloatCodec
from fedsim.comm.int_codec import IntCodec
from fedsim.comm.sign_codec import ScaledSignCodec, SignCodec


def _through_record(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    return {k: record[k].numpy() for k in record}


def test_every_strategy_payload_round_trips_exactly() -> None:
    rng = np.random.default_rng(0)
    for d in (1, 7, 8, 9, 1001):
        for steps in (1, 2, 10, 20):
            delta = rng.integers(-steps, steps + 1, size=d).astype(np.float32)
            codec = IntCodec(bound=steps)
            out = codec.decode(_through_record(codec.encode(delta)), d)
            assert np.array_equal(out, delta)
        signs = np.where(rng.random(d) < 0.5, -1.0, 1.0).astype(np.float32)
        assert np.array_equal(SignCodec().decode(_through_record(SignCodec().encode(signs)), d),
                              signs)
        p = rng.normal(size=d).astype(np.float32)
        scaled = ScaledSignCodec().decode(_through_record(ScaledSignCodec().encode(p)), d)
        assert np.array_equal(np.sign(scaled), np.where(p >= 0, 1.0, -1.0))
        assert np.allclose(np.abs(scaled), np.mean(np.abs(p)), rtol=1e-6)
        for fmt in ("fp32", "bf16", "fp16"):
            codec = FloatCodec(fmt)
            once = codec.decode(_through_record(codec.encode(p)), d)
            twice = codec.decode(_through_record(codec.encode(once)), d)
            assert np.array_equal(once, twice)
            if fmt == "fp32":
                assert np.array_equal(once, p)
