"""Checkpoints of a run, written atomically, so a killed or interrupted run resumes exactly.

A checkpoint holds everything the next round depends on: the global arrays, the strategy's
server-side state (every attribute: FedAdam's moments, FedLion's momentum, ...), the meter's
running totals, the state each client keeps across rounds (when the engine holds it), the
Python/NumPy/torch RNG states, and how many lines of metrics.jsonl belong to it. Every other
source of randomness in fedsim is derived from (seed, round, partition), so a resumed run
ends bit-identical to an uninterrupted one.

The file is ``checkpoint.npz`` in :mod:`fedsim.safe_state`'s format (JSON and NumPy arrays,
never pickle): loading one cannot run code. Callables and codecs among an object's attributes
are configuration, rebuilt from the run's config on resume, and are not saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedsim.comm.codec import Codec
from fedsim.config.errors import ConfigError
from fedsim.safe_state import StateFileError, read_state, write_state_atomic

CHECKPOINT_FILE = "checkpoint.npz"
LEGACY_FILE = "checkpoint.pkl"  # before fedsim refused pickle: never loaded

# Attributes that describe the current connection, not the algorithm: never saved.
TRANSIENT = frozenset({"_grid", "node_partitions", "round_report", "reply_problems", "_sent",
                       "_guard_reference"})


@dataclass
class Checkpoint:
    """The state of a run after ``round`` completed rounds."""

    round: int
    arrays: dict[str, np.ndarray]
    strategy_state: dict[str, Any]
    meter_state: dict[str, Any] | None
    client_states: dict[int, Any] | None
    wall_seconds: float
    metrics_lines: int
    rng: dict[str, Any] = field(default_factory=dict)


def object_state(obj: Any) -> dict[str, Any]:
    """The attributes of ``obj`` that a checkpoint keeps: not transient, not configuration
    (callables and codecs, which the object rebuilt from the run's config already has)."""
    return {k: v for k, v in vars(obj).items()
            if k not in TRANSIENT and not callable(v) and not isinstance(v, Codec)}


def capture_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def arrays_to_numpy(arrays: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in arrays.items()}


def numpy_to_arrays(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def save_checkpoint(run_dir: Path, ckpt: Checkpoint) -> None:
    """Write through a temporary file, fsync and rename: a reader sees the old or the new.

    A value the format does not hold raises UnsupportedState before anything is written; a
    failed write (a full disk) removes the temporary file and raises."""
    write_state_atomic(Path(run_dir) / CHECKPOINT_FILE,
                       {f.name: getattr(ckpt, f.name) for f in dataclasses.fields(ckpt)})


def checkpoint_error(run_dir: Path, detail: str) -> ConfigError:
    return ConfigError("--resume", str(run_dir), f"a results folder whose {CHECKPOINT_FILE} "
                       f"fedsim wrote ({detail})")


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The run's checkpoint, or None if it has none (ConfigError naming ``--resume`` for an
    old pickle checkpoint or a file fedsim did not write: neither is ever unpickled)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        if (Path(run_dir) / LEGACY_FILE).exists():
            raise checkpoint_error(run_dir, f"it holds only {LEGACY_FILE}, an older fedsim's "
                                   "pickle checkpoint, which is never loaded because unpickling "
                                   "can run code; start the run again")
        return None
    try:
        state = read_state(path)
        if not isinstance(state, dict) or set(state) != {f.name for f in
                                                          dataclasses.fields(Checkpoint)}:
            raise StateFileError("not a checkpoint's fields")
        return Checkpoint(**state)
    except (StateFileError, AttributeError, TypeError) as e:
        raise checkpoint_error(run_dir, f"this one is not: {e}") from e


def _rewrite_lines(path: Path, select: Callable[[list[str]], list[str]]) -> None:
    """Replace a text file by ``select`` of its lines, through a temporary file and a rename
    (nothing to do if it does not exist)."""
    if not path.exists():
        return
    kept = select(path.read_text().splitlines(keepends=True))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def drop_rounds_after(jsonl_path: Path, last_round: int) -> None:
    """Remove the lines of a per-round JSONL file whose ``round`` is after ``last_round``."""
    _rewrite_lines(jsonl_path, lambda lines: [
        line for line in lines
        if line.strip() and json.loads(line).get("round", 0) <= last_round])


def truncate_metrics(metrics_path: Path, lines: int) -> None:
    """Keep the first ``lines`` lines of metrics.jsonl (rounds after the checkpoint go)."""
    _rewrite_lines(metrics_path, lambda all_lines: all_lines[:lines])
