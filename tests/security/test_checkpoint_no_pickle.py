"""Finding 2: nothing fedsim loads from a results folder can run code.

A crafted pickle whose unpickling would create a marker file is put where fedsim reads a
checkpoint or a DNO generator; fedsim must refuse it with a clear error, and the marker must
never appear. Checkpoints round-trip bit-exactly in the new format, and a failed write (a full
disk) leaves no ``checkpoint.tmp`` behind.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsim.checkpoint import (
    CHECKPOINT_FILE,
    LEGACY_FILE,
    Checkpoint,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from fedsim.cli import main
from fedsim.comm.meter import ClientTraffic
from fedsim.config.errors import ConfigError
from fedsim.config.schema import DiffusionConfig
from fedsim.diffusion.dno_task import load_generator
from fedsim.safe_state import UnsupportedState
from strategies.vector import Layout

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this calls ``os.makedirs(marker)``: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def _results_folder(tmp_path: Path) -> Path:
    """A finished 2-round run with a checkpoint (in-process engine, seconds)."""
    out = tmp_path / "run"
    assert main(["run", str(ROOT / "configs" / "quickstart.toml"), "--out", str(out),
                 "--engine", "inprocess", "--set", "train.rounds=2", "--set",
                 "output.checkpoint_every=1", "--set", "output.plots=false"]) == 0
    return out


def _ckpt(**over) -> Checkpoint:
    base = dict(round=3, arrays={"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
                strategy_state={}, meter_state=None, client_states=None, wall_seconds=1.5,
                metrics_lines=4, rng=capture_rng())
    base.update(over)
    return Checkpoint(**base)


def test_old_pickle_checkpoint_is_refused_and_never_unpickled(tmp_path, capsys) -> None:
    run = _results_folder(tmp_path)
    (run / CHECKPOINT_FILE).unlink()
    marker = tmp_path / "pwned"
    (run / LEGACY_FILE).write_bytes(_evil_pickle(marker))
    assert main(["run", "--resume", str(run)]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "--resume" in err and LEGACY_FILE in err and "pickle" in err


@pytest.mark.parametrize("content", ["pickle", "pickled-npy", "garbage"])
def test_foreign_checkpoint_file_is_refused_and_never_unpickled(tmp_path, capsys,
                                                                content) -> None:
    run = _results_folder(tmp_path)
    marker = tmp_path / "pwned"
    if content == "pickle":
        data = _evil_pickle(marker)
    elif content == "pickled-npy":  # an .npz whose state entry is an object array
        buf = io.BytesIO()
        np.savez(buf, __state__=np.array([_Payload(marker)], dtype=object))
        data = buf.getvalue()
    else:
        data = b"PK\x03\x04 not really a zip"
    (run / CHECKPOINT_FILE).write_bytes(data)
    assert main(["run", "--resume", str(run)]) == 2
    assert not marker.exists()
    assert "--resume" in capsys.readouterr().err


def test_checkpoint_round_trip_is_bit_exact(tmp_path) -> None:
    traffic = ClientTraffic(node_id=2**62 + 7, downlink_bytes=10, uplink_error=True)
    client = RecordDict({"ef": ArrayRecord({"v": Array(np.array([1.5, -0.0], np.float32))}),
                         "cfg": ConfigRecord({"a": 1, "b": b"\x00\xff", "c": [1.0, 2.0]}),
                         "m": MetricRecord({"loss": 0.25})})
    strategy = {"m_t": np.array([np.nan, np.inf, -0.0, 1e-320]), "lr": 0.1 + 0.2,
                "scalar": np.float32(0.3), "count": np.int64(-5), "big": 3**80,
                "by_round": {1: [0.5, (2, "x")], 2: None}, "flag": True,
                "layout": Layout(("w",), ((2, 3),), (np.dtype(np.float32),)),
                "bytes": b"abc", "nested": [[], {}, ()]}
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    rng = capture_rng()
    ckpt = _ckpt(strategy_state=strategy, meter_state={"_last": [traffic]},
                 client_states={0: client, 7: RecordDict()}, rng=rng)
    save_checkpoint(tmp_path, ckpt)
    back = load_checkpoint(tmp_path)
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng(back.rng)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == draws
    s = back.strategy_state
    assert s["m_t"].tobytes() == strategy["m_t"].tobytes()
    assert s["lr"] == 0.1 + 0.2
    assert type(s["scalar"]) is np.float32 and s["scalar"] == np.float32(0.3)
    assert type(s["count"]) is np.int64 and s["big"] == 3**80
    assert s["by_round"] == {1: [0.5, (2, "x")], 2: None} and s["flag"] is True
    assert s["layout"] == strategy["layout"] and s["bytes"] == b"abc"
    assert s["nested"] == [[], {}, ()]
    assert back.meter_state == {"_last": [traffic]}
    assert set(back.client_states) == {0, 7}
    got = back.client_states[0]
    assert got["ef"]["v"].numpy().tobytes() == client["ef"]["v"].numpy().tobytes()
    assert dict(got["cfg"]) == {"a": 1, "b": b"\x00\xff", "c": [1.0, 2.0]}
    assert dict(got["m"]) == {"loss": 0.25}
    assert back.arrays["w"].tobytes() == ckpt.arrays["w"].tobytes()


def test_unsupported_state_is_refused_when_saving(tmp_path) -> None:
    class Opaque:
        pass

    with pytest.raises(UnsupportedState, match=r"state\['strategy_state'\]\['odd'\].*Opaque"):
        save_checkpoint(tmp_path, _ckpt(strategy_state={"odd": Opaque()}))
    assert list(tmp_path.iterdir()) == []  # neither checkpoint.npz nor checkpoint.tmp


def test_failed_write_leaves_no_tmp_and_keeps_the_old_checkpoint(tmp_path, monkeypatch) -> None:
    save_checkpoint(tmp_path, _ckpt(round=1))

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, _ckpt(round=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]
    assert load_checkpoint(tmp_path).round == 1


def test_dno_generator_from_a_pickle_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    pt = tmp_path / "generator.pt"
    pt.write_bytes(_evil_pickle(marker))
    with pytest.raises(ConfigError, match="dno.generator"):
        load_generator(str(pt), DiffusionConfig(), (1, 8, 8))
    folder = tmp_path / "someone-elses-run"
    folder.mkdir()
    (folder / LEGACY_FILE).write_bytes(_evil_pickle(marker))
    with pytest.raises(ConfigError, match="dno.generator"):
        load_generator(str(folder), DiffusionConfig(), (1, 8, 8))
    assert not marker.exists()


def test_dno_generator_state_dict_still_loads(tmp_path) -> None:
    from fedsim.diffusion.ddpm_task import eps_mlp

    model = eps_mlp(DiffusionConfig(), (1, 8, 8))
    torch.save(model.state_dict(), tmp_path / "g.pt")
    loaded = load_generator(str(tmp_path / "g.pt"), DiffusionConfig(), (1, 8, 8))
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
