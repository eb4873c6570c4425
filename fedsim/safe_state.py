"""State files that cannot run code: typed JSON for structure, NumPy arrays for numbers.

``pickle`` restores objects by calling whatever the file names, so a results folder from someone
else (a shared drive, an archive) could execute code on ``--resume``. A state file here is one
``.npz`` archive (a zip of ``.npy`` files), read with ``allow_pickle=False``: the entry
``__state__`` holds UTF-8 JSON describing the structure, every array is an entry of its own.
Only the types that occur in fedsim's checkpoints are written, each tagged with a fixed name;
anything else is refused when the file is written, and a reader builds nothing but these types
(no class is ever looked up by a name read from the file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsim.comm.meter import ClientTraffic
from strategies.vector import Layout

STATE_ENTRY = "__state__"
FORMAT = "fedsim-state-1"
TAG = "__t"

# Plain dataclasses that may occur in saved state, by the fixed name written for them.
DATACLASSES: dict[str, type] = {"Layout": Layout, "ClientTraffic": ClientTraffic}
RECORDS: dict[str, type] = {"RecordDict": RecordDict, "ArrayRecord": ArrayRecord,
                            "ConfigRecord": ConfigRecord, "MetricRecord": MetricRecord}


class StateFileError(ValueError):
    """A state file that is not one fedsim wrote (foreign, corrupt or of an older format)."""


class UnsupportedState(TypeError):
    """A value of a type a state file does not hold (raised when writing, naming where)."""


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray, where: str) -> str:
        if a.dtype.hasobject or a.dtype.kind == "V":
            raise UnsupportedState(f"{where}: a NumPy array of dtype {a.dtype} (only numeric, "
                                   "boolean and string arrays can be saved)")
        ref = f"a{len(self.arrays)}"
        self.arrays[ref] = a
        return ref

    def encode(self, x: Any, where: str) -> Any:  # noqa: PLR0911 - one branch per type
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, np.generic):  # before int/float: np.float64 is a float
            return {TAG: "npscalar", "ref": self.array(np.asarray(x), where)}
        if isinstance(x, int):
            return x
        if isinstance(x, float):
            return {TAG: "float", "hex": x.hex()}  # bit-exact, NaN and infinities included
        if isinstance(x, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
        if isinstance(x, tuple):
            return {TAG: "tuple", "items": [self.encode(v, f"{where}[{i}]")
                                            for i, v in enumerate(x)]}
        if isinstance(x, dict):
            return {TAG: "dict", "items": [[self.encode(k, f"{where} key"),
                                            self.encode(v, f"{where}[{k!r}]")]
                                           for k, v in x.items()]}
        if isinstance(x, bytes):
            return {TAG: "bytes", "ref": self.array(np.frombuffer(x, np.uint8), where)}
        if isinstance(x, np.ndarray):
            return {TAG: "ndarray", "ref": self.array(x, where)}
        if isinstance(x, np.dtype):
            return {TAG: "dtype", "str": self.encode(x.str, where)}
        if isinstance(x, torch.Tensor):
            if x.device.type != "cpu" or x.dtype == torch.bfloat16 or x.requires_grad:
                raise UnsupportedState(f"{where}: a torch tensor ({x.dtype} on {x.device}; only "
                                       "CPU tensors NumPy can hold are saved)")
            return {TAG: "tensor", "ref": self.array(x.detach().numpy().copy(), where)}
        if isinstance(x, Array):
            return {TAG: "Array", "dtype": x.dtype, "shape": list(x.shape), "stype": x.stype,
                    "ref": self.array(np.frombuffer(x.data, np.uint8), where)}
        for name, cls in RECORDS.items():
            if type(x) is cls:
                return {TAG: name, "items": [[k, self.encode(v, f"{where}[{k!r}]")]
                                             for k, v in x.items()]}
        for name, cls in DATACLASSES.items():
            if type(x) is cls:
                return {TAG: name, "fields": {f.name: self.encode(getattr(x, f.name),
                                                                  f"{where}.{f.name}")
                                              for f in dataclasses.fields(cls)}}
        raise UnsupportedState(
            f"{where}: a value of type {type(x).__module__}.{type(x).__qualname__}, which a "
            "fedsim state file does not hold (it holds None, bool, int, float, str, bytes, "
            "list, tuple, dict, NumPy arrays and scalars, CPU torch tensors, Flower records "
            f"and {', '.join(DATACLASSES)}); keep such state as one of these types")


def _decode(x: Any, arrays: Callable[[str], np.ndarray]) -> Any:  # noqa: PLR0911, PLR0912
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, list):
        return [_decode(v, arrays) for v in x]
    if not isinstance(x, dict) or not isinstance(x.get(TAG), str):
        raise StateFileError(f"unexpected JSON value {str(x)[:80]!r}")
    tag = x[TAG]
    if tag == "float":
        return float.fromhex(x["hex"])
    if tag == "tuple":
        return tuple(_decode(v, arrays) for v in x["items"])
    if tag == "dict":
        return {_decode(k, arrays): _decode(v, arrays) for k, v in x["items"]}
    if tag == "npscalar":
        return arrays(x["ref"])[()]
    if tag == "bytes":
        return arrays(x["ref"]).tobytes()
    if tag == "ndarray":
        return arrays(x["ref"])
    if tag == "dtype":
        return np.dtype(_decode(x["str"], arrays))
    if tag == "tensor":
        return torch.from_numpy(arrays(x["ref"]).copy())
    if tag == "Array":
        return Array(dtype=str(x["dtype"]), shape=tuple(int(s) for s in x["shape"]),
                     stype=str(x["stype"]), data=arrays(x["ref"]).tobytes())
    if tag in RECORDS:
        return RECORDS[tag]({str(k): _decode(v, arrays) for k, v in x["items"]})
    if tag in DATACLASSES:
        return DATACLASSES[tag](**{str(k): _decode(v, arrays) for k, v in x["fields"].items()})
    raise StateFileError(f"unknown type tag {tag!r}")


def write_state(f: BinaryIO, state: Any) -> None:
    """Write ``state`` to the open binary file ``f`` (UnsupportedState names a value that
    cannot be written, before anything is written)."""
    enc = _Encoder()
    doc = {"format": FORMAT, "state": enc.encode(state, "state")}
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    np.savez(f, allow_pickle=False, **{STATE_ENTRY: np.frombuffer(text.encode(), np.uint8)},
             **enc.arrays)


def write_state_atomic(path: Path, state: Any) -> None:
    """Write ``state`` to ``path`` through a temporary file, fsync and rename: a reader sees
    the old file or the new one. A value the format does not hold raises UnsupportedState
    before anything is written; a failed write (a full disk) removes the temporary file."""
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            write_state(f, state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_state(path: Path) -> Any:
    """The state saved in ``path``; StateFileError if it is not a fedsim state file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile) or STATE_ENTRY not in npz.files:
                raise StateFileError("not a fedsim state file (no state entry)")
            doc = json.loads(npz[STATE_ENTRY].tobytes().decode("utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise StateFileError(f"format {str(doc.get('format'))[:40]!r} "
                                     f"(expected {FORMAT!r})")

            def arrays(ref: str) -> np.ndarray:
                if not isinstance(ref, str) or ref not in npz.files or ref == STATE_ENTRY:
                    raise StateFileError(f"missing array entry {str(ref)[:40]!r}")
                return npz[ref]
            return _decode(doc["state"], arrays)
    except StateFileError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, RecursionError,
            zipfile.BadZipFile) as e:
        raise StateFileError(f"not a readable fedsim state file ({type(e).__name__}: "
                             f"{str(e)[:200]})") from e
