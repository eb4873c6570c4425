"""Fault injection on the client: exceptions, straggler delays, corrupted and poisoned replies.

Every decision is drawn from (seed, partition, round), so a faulty run is as reproducible as a
clean one and a test can tell exactly which replies were corrupted.

Poisoned replies (``faults.attackers``, ``faults.attacks``) are a research tool for Byzantine
clients: the partitions listed send, in every round, a well-formed reply that claims a huge
weight and/or carries huge finite values, the two replies that hijack an unguarded weighted
mean (docs/robustness.md; ``[robust]`` holds the guards against them).
"""

from __future__ import annotations

import os
import time

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedsim.config.schema import FaultConfig

FAULT_STREAM = 2
ACTOR_ENV = "FEDSIM_ACTOR"  # set to "1" inside fedsim's Ray actors
# the largest "num-examples" a reply schema accepts as an exact integer count (float64 holds
# every integer up to 2**53; 1.8e308 is inf and refused by any finiteness check): against the
# ~100 examples of an honest client it takes 1 - 1e-13 of an unguarded weighted mean
ATTACK_WEIGHT = 2**53
ATTACK_VALUE = 3e38  # finite in float32 (max 3.4028e38): passes every NaN/Inf check


class InjectedFault(RuntimeError):
    """A client failure injected by the experiment's [faults] settings."""


def fault_rng(seed: int, partition_id: int, server_round: int) -> np.random.Generator:
    return np.random.default_rng([seed, partition_id, server_round, FAULT_STREAM])


def draw_faults(faults: FaultConfig, seed: int, partition_id: int,
                server_round: int) -> dict[str, object]:
    """Which faults hit this client in this round: ``raise``, ``delay`` and ``corrupt``.

    With every rate at zero nothing can hit, so nothing is drawn (the fault stream is the
    client's own: skipping it changes no other random number)."""
    attack = list(faults.attacks) if partition_id in faults.attackers else []
    if not (faults.client_exception_rate > 0 or faults.actor_kill_rate > 0
            or faults.straggler_rate > 0 or faults.corrupt_rate > 0):
        return {"raise": False, "kill": False, "delay": 0.0, "corrupt": None, "attack": attack}
    rng = fault_rng(seed, partition_id, server_round)
    u = rng.random(4)
    return {
        "attack": attack,
        "raise": bool(u[0] < faults.client_exception_rate),
        "kill": bool(u[3] < faults.actor_kill_rate),
        "delay": faults.straggler_delay if u[1] < faults.straggler_rate else 0.0,
        "corrupt": (str(rng.choice(faults.corruptions)) if u[2] < faults.corrupt_rate
                    else None),
    }


def before_training(drawn: dict[str, object]) -> None:
    """Sleep, kill the hosting actor process, or raise, as drawn."""
    if drawn["delay"]:
        time.sleep(float(drawn["delay"]))
    if drawn["kill"]:
        if os.environ.get(ACTOR_ENV) == "1":
            os._exit(1)  # the whole actor dies, as on a crashed device: the engine must cope
        raise InjectedFault("injected actor kill (faults.actor_kill_rate; no actor to kill "
                            "on this engine, so the client raises)")
    if drawn["raise"]:
        raise InjectedFault("injected client exception (faults.client_exception_rate)")


def corrupt(arrays: ArrayRecord, kind: str) -> ArrayRecord:
    """A copy of ``arrays`` with its first array damaged the way ``kind`` says."""
    items = {k: a.numpy().copy() for k, a in arrays.items()}
    key = next(iter(items))
    x = items[key]
    if kind == "nan":
        x = x.astype(np.float32) if x.dtype.kind != "f" else x
        x.reshape(-1)[0] = np.nan
    elif kind == "inf":
        x = x.astype(np.float32) if x.dtype.kind != "f" else x
        x.reshape(-1)[-1] = np.inf
    elif kind == "shape":
        x = x.reshape(-1)[:-1]
    elif kind == "dtype":
        x = x.astype(np.float64) if x.dtype != np.float64 else x.astype(np.float32)
    elif kind == "truncate":
        x = x.reshape(-1)[: max(1, x.size // 2)]
    items[key] = x
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in items.items()})


def poison(content: RecordDict, attacks: list[str], weight_key: str = "num-examples") -> \
        RecordDict:
    """A Byzantine train reply: ``content`` with each of ``attacks`` applied.

    ``huge-weight`` sets every MetricRecord's ``weight_key`` to :data:`ATTACK_WEIGHT`;
    ``huge-values`` sets every float value of every ArrayRecord to :data:`ATTACK_VALUE` (packed
    integer or sign payloads are left alone: their codec bounds what they can say).
    """
    if not attacks:
        return content
    out = RecordDict()
    for key, record in content.items():
        if isinstance(record, MetricRecord) and "huge-weight" in attacks and weight_key in record:
            record = MetricRecord({**dict(record), weight_key: ATTACK_WEIGHT})
        elif isinstance(record, ArrayRecord) and "huge-values" in attacks:
            arrays = {}
            for name, array in record.items():
                x = array.numpy()
                if x.dtype.kind == "f":
                    x = np.full_like(x, ATTACK_VALUE)
                arrays[name] = Array(np.ascontiguousarray(x))
            record = ArrayRecord(arrays)
        out[key] = record
    return out
