"""Checkpoints of a foreign Flower app's run: the model as the grid saw it sent, never pickle.

A Flower ServerApp keeps its strategy, its model and its loop inside its own ``main``; the
metering grid (:class:`~fedsim.engine.metered_grid.MeteredGrid`) sees only the messages. What
it can save honestly is what went out: the ArrayRecords of a round's ``train`` instructions
(the global model each client received) and the ``metrics.jsonl`` rows so far. Two files, both
in :mod:`fedsim.safe_state`'s format (JSON and NumPy arrays; loading one cannot run code):

``app_checkpoint.npz``  every ``checkpoint_every`` rounds: the arrays of that round's training
                        instructions and the rows up to that round
``final_model.npz``     at the end: the last arrays the app sent (the evaluate instructions
                        after its last round, where it evaluates federatedly, else the last
                        round's training instructions), and every row

A run cannot resume from them (the strategy's own state, such as FedAdam's moments or its
sampling RNG, never crossed the grid): ``fedsim simulate --resume`` is refused
(:data:`RESUME_REFUSAL`), and the saved model can start a new run as its initial arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, Message

from fedsim.safe_state import StateFileError, read_state, write_state_atomic

APP_CHECKPOINT_FILE = "app_checkpoint.npz"
FINAL_MODEL_FILE = "final_model.npz"
KIND = "flower-app-model"
RESUME_REFUSAL = (
    "a run of a Flower app on the fedsim engine cannot resume: its strategy's state (the "
    "model it aggregates, server optimiser moments, the round it is in, its sampling RNG) "
    "lives inside the app's own ServerApp main, which fedsim does not see. Its results "
    f"folder holds the model the clients last received ({APP_CHECKPOINT_FILE}, "
    f"{FINAL_MODEL_FILE}); read it with fedsim.load(DIR).arrays() and start a new run "
    "with it as the app's initial arrays")


@dataclass(frozen=True)
class SentModel:
    """The ArrayRecords an instruction carried, by record name, as the clients got them.

    ``same_for_all``: every instruction of the phase carried these very arrays (a strategy
    that sends each client its own model keeps the first client's here)."""

    round: int
    phase: str
    records: dict[str, dict[str, Array]]
    same_for_all: bool


def _arrays_of(msg: Message) -> dict[str, dict[str, Array]]:
    if not msg.has_content():
        return {}
    return {name: dict(rec.items()) for name, rec in msg.content.array_records.items()}


def sent_model(messages: list[Message], server_round: int, phase: str) -> SentModel | None:
    """The arrays ``messages`` carried (None if none carried any). Cheap: it keeps the
    ``Array`` objects (immutable bytes), compared across instructions only where their
    contents are different objects."""
    carriers = [m for m in messages if m.has_content() and m.content.array_records]
    if not carriers:
        return None
    first = carriers[0]
    records = _arrays_of(first)
    same = all(m.content is first.content or _same_arrays(_arrays_of(m), records)
               for m in carriers[1:])
    return SentModel(server_round, phase, records, same)


def _same_arrays(a: dict[str, dict[str, Array]], b: dict[str, dict[str, Array]]) -> bool:
    return a.keys() == b.keys() and all(
        a[r].keys() == b[r].keys() and all(
            x is y or (x.dtype == y.dtype and x.shape == y.shape and x.data == y.data)
            for x, y in ((a[r][k], b[r][k]) for k in a[r]))
        for r in a)


def save_app_model(path: Path, model: SentModel, rows: list[dict[str, Any]],
                   final: bool) -> None:
    """Write ``model`` and ``rows`` to ``path`` atomically (temporary file, fsync, rename)."""
    state = {"kind": KIND, "final": final, "round": model.round, "phase": model.phase,
             "same_for_all": model.same_for_all, "metrics": rows,
             "arrays": {name: {k: a.numpy() for k, a in rec.items()}
                        for name, rec in model.records.items()}}
    write_state_atomic(path, state)


def load_app_model(path: Path) -> dict[str, Any]:
    """The saved state (``arrays``: record name -> name -> ndarray, ``metrics``, ``round``,
    ``phase``, ``final``, ``same_for_all``); ValueError naming the file if fedsim did not
    write it (nothing in it is unpickled)."""
    try:
        state = read_state(path)
    except StateFileError as err:
        raise ValueError(f"{path} is not a model file fedsim wrote: {err}") from err
    if not isinstance(state, dict) or state.get("kind") != KIND or not isinstance(
            state.get("arrays"), dict) or not all(
            isinstance(rec, dict) and all(isinstance(a, np.ndarray) for a in rec.values())
            for rec in state["arrays"].values()):
        raise ValueError(f"{path} is not a model file fedsim wrote (kind "
                         f"{str(state.get('kind') if isinstance(state, dict) else None)[:40]!r}"
                         f", expected {KIND!r} with arrays)")
    return state
