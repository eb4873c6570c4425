"""``fedsim.comm.npy`` encodes and decodes exactly as Flower's ``np.save``/``np.load`` path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedsim.comm import npy

RNG = np.random.default_rng(0)
ARRAYS = [RNG.normal(size=(3, 4)).astype(np.float32), np.ones(()), np.arange(10),
          np.asfortranarray(RNG.normal(size=(3, 5))), RNG.normal(size=(4, 6))[:, ::2],
          np.zeros((0, 3), np.float32), np.array([True, False]),
          np.arange(6, dtype=">i4").reshape(2, 3), RNG.integers(0, 255, 17, dtype=np.uint8)]


@pytest.mark.parametrize("index", range(len(ARRAYS)))
def test_same_bytes_and_values_as_flower(index: int) -> None:
    x = ARRAYS[index]
    for _ in range(2):  # first call fills the header caches, the second uses them
        ours, theirs = npy.encode(x), Array(x)
        assert ours.__dict__ == theirs.__dict__  # same fields, dirty flag and all
        assert type(ours.data) is bytes and ours.is_dirty
        ref, out = theirs.numpy(), npy.decode(theirs)
        assert out.dtype == ref.dtype and out.shape == ref.shape and out.flags.writeable
        np.testing.assert_array_equal(out, ref)


def test_state_dict_round_trip_matches_flower() -> None:
    state = torch.nn.Linear(8, 3).state_dict()
    ours, theirs = npy.record_from_torch(state), ArrayRecord(state)
    assert [(k, a.data) for k, a in ours.items()] == [(k, a.data) for k, a in theirs.items()]
    back = npy.record_to_torch(theirs)
    for key, value in theirs.to_torch_state_dict().items():
        assert torch.equal(back[key], value)


def test_malformed_data_fails_like_flower() -> None:
    good = Array(np.arange(100, dtype=np.float32))
    bad = Array(dtype=good.dtype, shape=good.shape, stype=good.stype, data=good.data[:-8])
    with pytest.raises(ValueError):
        bad.numpy()
    with pytest.raises(ValueError):
        npy.decode(bad)
