"""Reply folding: an actor sums its clients' FedAvg replies before they travel (opt-in).

FedAvg's server step is a weighted average, ``x = sum_i n_i x_i / sum_i n_i`` (McMahan et
al. 2017, Algorithm 1), and so are its metrics. A weighted average of partial weighted averages,
each weighted by its partial ``sum n_i``, is the same average, so an actor may reduce the
replies of the clients it ran to one reply before anything crosses to the driver, as
pfl-research's workers do (Granlund et al. 2024, arXiv 2404.06430; see
docs/design-notes.md#pfl-research-sums-on-each-worker). The driver then moves
and averages one reply per fold block instead of one per client. A fold block is
``engine.fold_block`` consecutive clients of a device profile, always placed on one actor
(``fedsim.engine.pool.place_nodes``), so which replies are summed together, and in what
order, does not depend on the number of actors.

What stays per client: the reply checks (a reply that the strategy would reject, or an error,
is sent back on its own and reported as usual), the byte meter (each folded client's reply is
measured in the actor, :class:`FoldReceipt`) and the virtual clock (with a deadline, a reply
that arrives too late in simulated time is sent back on its own, :class:`FoldDeadline`, and
the driver's clock drops it as it drops every straggler). What changes: the partial
sums are float64, so the result equals the unfolded one within float tolerance, not bit for
bit; the same seed and ``fold_block`` give the same bits on any number of actors, whatever
order they finish in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict

from fedsim.comm.npy import record_from_numpy, view
from fedsim.comm.records import array_records, metric_records
from fedsim.config.schema import DeviceProfile
from fedsim.engine.clock import client_seconds, within_deadline


@dataclass(frozen=True)
class ReplyFold:
    """What an actor needs to fold train replies: the weight's metric key and the strategy's
    own reply check (picklable: a module-level function or a ``functools.partial`` of one)."""

    weight_key: str
    reject_reason: Callable[[Message], str | None]


@dataclass(frozen=True)
class FoldDeadline:
    """What an actor needs to keep a straggler's reply out of the sum: the inputs of the
    driver's own ``client_seconds`` (the batch's device profile, each item's downlink bytes,
    the clock's fixed compute seconds or None for measured ones) and the phase deadline."""

    profile: DeviceProfile
    deadline_s: float
    fixed_compute_s: float | None
    down_bytes: list[int]

    def late(self, item: int, compute_s: float, up_bytes: int) -> bool:
        """Whether the clock will drop item ``item``'s reply (the driver's very test)."""
        compute = compute_s if self.fixed_compute_s is None else self.fixed_compute_s
        return not within_deadline(
            client_seconds(self.profile, self.down_bytes[item], compute, up_bytes),
            self.deadline_s)


class FoldReceipt(NamedTuple):
    """A folded client's reply as the meter sees it: who sent it and its measured sizes."""

    node_id: int
    wire_bytes: int
    payload_bytes: int


@dataclass
class FoldSum:
    """Running ``sum_i n_i x_i`` (float64), ``sum_i n_i`` and ``sum_i n_i m_i`` of one batch."""

    fold: ReplyFold
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scratch: dict[str, np.ndarray] = field(default_factory=dict)  # n_i x_i, reused
    dtypes: dict[str, np.dtype] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weight: float = 0.0
    count: int = 0
    first: tuple[Message, Message] | None = None  # (instruction, reply) of the first folded

    def add(self, instruction: Message, reply: Message) -> bool:
        """Fold ``reply`` in if it is a clean train reply; False: it must travel on its own."""
        if reply.has_error() or self.fold.reject_reason(reply) is not None:
            return False
        (arrays,) = array_records(reply.content).values()
        (metrics,) = metric_records(reply.content).values()
        n = metrics[self.fold.weight_key]
        for key, value in arrays.items():
            x = view(value)
            if key not in self.arrays:
                self.arrays[key] = np.zeros(x.shape, np.float64)
                self.scratch[key] = np.empty(x.shape, np.float64)
                self.dtypes[key] = x.dtype
            term = np.multiply(x, n, out=self.scratch[key])
            np.add(self.arrays[key], term, out=self.arrays[key])
        for key, value in metrics.items():
            if key == self.fold.weight_key:
                continue
            term = [v * n for v in value] if isinstance(value, list) else value * n
            old = self.metrics.get(key)
            self.metrics[key] = term if old is None else (
                [a + b for a, b in zip(old, term, strict=True)] if isinstance(term, list)
                else old + term)
        self.weight += n
        self.count += 1
        self.first = self.first or (instruction, reply)
        return True

    def reply(self) -> Message | None:
        """One reply carrying the weighted average of the folded ones (None if none were); it
        answers the first folded instruction, as if its client had sent it."""
        if self.first is None:
            return None
        w = self.weight
        arrays = record_from_numpy({k: (s / w).astype(self.dtypes[k])
                                    for k, s in self.arrays.items()})
        metrics = {k: [v / w for v in s] if isinstance(s, list) else s / w
                   for k, s in self.metrics.items()}
        metrics[self.fold.weight_key] = int(w) if float(w).is_integer() else w
        instruction, first = self.first
        (arrays_name,) = array_records(first.content)
        (metrics_name,) = metric_records(first.content)
        content = RecordDict({arrays_name: arrays, metrics_name: MetricRecord(metrics)})
        return Message(content, reply_to=instruction)
