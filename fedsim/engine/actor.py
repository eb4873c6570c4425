"""The resident Ray actor that runs the ClientApp for the virtual nodes placed on it.

An actor lives for the whole run, so everything the ClientApp caches per process (partitions,
model objects, imports) stays warm, and it holds the ``Context`` of each of its nodes, so
``context.state`` persists across rounds there (placement is therefore static); a non-empty
state is also sent back after each call when the driver keeps copies
(``engine.client_state_backup``), so that a replaced actor's nodes resume from them.
One call carries a whole batch: the records shared by several messages (the global model) arrive
once, and each message gets a private shallow copy of them before the ClientApp runs, because
ClientApps may consume their input (``to_torch_state_dict(keep_input=False)``); a ClientApp
that sets ``fedsim_keeps_inputs = True`` (fedsim's own) only reads them and skips the copy.
With a :class:`~fedsim.engine.fold.ReplyFold` the batch's clean train replies are summed into
one reply per fold block before they leave the actor (``engine.fold_replies``).

This module is imported inside Ray workers; it keeps no module-level mutable state (Ray pickles
actor classes by value, so such state would be a copy;
docs/design-notes.md#ray-pickles-actor-classes-by-value).
"""

from __future__ import annotations

import copy
import importlib
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from flwr.app import ArrayRecord, Context, Message, MessageType, Metadata, RecordDict
from flwr.app.message import make_message
from flwr.common.constant import ErrorCode

from fedsim.comm.meter import message_payload_bytes
from fedsim.engine.base import error_reply, set_client_identity
from fedsim.engine.fold import FoldDeadline, FoldSum, ReplyFold
from fedsim.engine.wire import message_bytes

KEEPS_INPUTS = "fedsim_keeps_inputs"
"""Attribute a ClientApp sets to True when its handlers only read the instruction's records."""
TRAIN_BATCH = "fedsim_train_batch"
"""Attribute of a ClientApp that can run several train instructions as one computation
(vectorized clients): ``(messages, contexts, budget_bytes) -> (replies or None, notes)``."""


@dataclass(frozen=True)
class VectorizeOptions:
    """``engine.vectorize`` and ``engine.vectorize_memory_mb`` as the actors apply them."""

    mode: str = "off"  # auto | on | off
    memory_mb: float = 1024.0

    @property
    def budget_bytes(self) -> float:
        return self.memory_mb * 2**20

    def applies_here(self) -> bool:
        """Whether this actor batches its clients: always with ``on``; with ``auto`` where it
        sees a GPU (Ray hides GPUs from CPU-only actors), since on the CPU the batched kernels
        round differently from one client alone and the per-client path keeps every engine's
        results equal bit for bit; never with ``off``."""
        if self.mode == "on":
            return True
        if self.mode == "auto":
            import torch

            return torch.cuda.is_available()
        return False

# One item of a batch: the instruction's metadata and, per content key, the key of its record
# in the batch's shared record table.
BatchItem = tuple[Metadata, dict[str, int]]
# What comes back per item: the reply (None: folded), its compute seconds, its serialized bytes
# and, for a folded reply, its payload bytes (the meter's figures for a reply it never sees).
Outcome = tuple[Message | None, float, int, int]


def load_app(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr or "app")


def private_copy(record: Any) -> Any:
    """A copy a ClientApp may consume; Array payloads (immutable bytes) are shared, not copied."""
    if isinstance(record, ArrayRecord):
        return ArrayRecord.from_array_dict(record)
    return copy.deepcopy(record)


class ClientActor:
    """Runs the ClientApp for its nodes; wrapped with ``ray.remote`` by the pool."""

    def __init__(self, client_app_ref: str, profile: str, timer: str,
                 registrations: dict[str, dict[str, Any]] | None = None,
                 vectorize: VectorizeOptions | None = None) -> None:
        os.environ["FEDSIM_ACTOR"] = "1"  # lets injected actor kills (faults) end this process
        if registrations:  # the driver's decorator registrations (fedsim.registry)
            from fedsim.registry import install_session_registrations

            install_session_registrations(registrations)
        self.app = load_app(client_app_ref)
        self.vectorize = vectorize or VectorizeOptions()
        self.train_batch = getattr(self.app, TRAIN_BATCH, None) \
            if self.vectorize.applies_here() else None
        self.notes: set[str] = set()
        self.vectorized = 0  # client calls answered by a batched computation
        if self.train_batch is not None:
            from fedsim.tasks.stacked_training import warm_up

            warm_up()
        # a ClientApp that declares it never modifies or consumes its input records shares them
        self.copy = (lambda record: record) if getattr(self.app, KEEPS_INPUTS, False) \
            else private_copy
        self.profile = profile
        self.timer = time.thread_time if timer == "cpu" else time.perf_counter
        self.contexts: dict[int, Context] = {}
        self.served: dict[int, int] = {}

    def register(self, contexts: list[Context]) -> str:
        """Hold these nodes' Contexts (replacing any previous ones); returns the id of the Ray
        node this actor runs on (the pool watches it for node loss)."""
        import ray

        for ctx in contexts:
            self.contexts[ctx.node_id] = ctx
        return ray.get_runtime_context().get_node_id()

    def export_states(self) -> dict[int, RecordDict]:
        """Each held node's ``Context.state``, by partition id (for checkpoints)."""
        return {int(c.node_config["partition-id"]): c.state for c in self.contexts.values()}

    def import_states(self, states: dict[int, RecordDict]) -> None:
        for ctx in self.contexts.values():
            pid = int(ctx.node_config["partition-id"])
            if pid in states:
                ctx.state = states[pid]

    def describe(self) -> dict[str, Any]:
        """Who this actor is, the Ray resources it was given, the GPUs it sees (Ray's ids,
        ``CUDA_VISIBLE_DEVICES``, what torch makes of them and where ``train.device = auto``
        trains) and how many calls it served."""
        import ray
        import torch

        from fedsim.tasks.device import resolve_device

        rc = ray.get_runtime_context()
        cuda = torch.cuda.is_available()
        return {"profile": self.profile, "pid": os.getpid(), "actor_id": rc.get_actor_id(),
                "node_ip": ray.util.get_node_ip_address(),
                "ray_node_id": rc.get_node_id(), "hostname": socket.gethostname(),
                "resources": rc.get_assigned_resources(), "nodes": sorted(self.contexts),
                "partitions": sorted(int(c.node_config["partition-id"])
                                     for c in self.contexts.values()),
                "served": dict(self.served), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "torch_cuda_devices": torch.cuda.device_count() if cuda else 0,
                "torch_cuda_names": [torch.cuda.get_device_name(i)
                                     for i in range(torch.cuda.device_count())] if cuda else [],
                "auto_device": str(resolve_device("auto")),
                "vectorize": self.vectorize.mode, "vectorized_calls": self.vectorized}

    def handle(self, shared: dict[int, Any], items: list[BatchItem],
               fold: ReplyFold | None = None, deadline: FoldDeadline | None = None,
               send_states: bool = False, blocks: list[int] | None = None,
               ) -> tuple[list[Outcome], dict[int, Message], dict[int, RecordDict]]:
        """Run the ClientApp on each message of the batch, in order; with ``fold``, also one
        reply per fold block (``blocks[i]``: item ``i``'s; None: one block) that sums the
        block's clean train replies that are on time (which come back as None); with
        ``send_states``, the non-empty ``Context.state`` of every node that ran (by node
        id), for the driver's copy."""
        sums: dict[int, FoldSum] = {}
        outcomes = []
        batched = self._batched(shared, items)
        for index, (metadata, keys) in enumerate(items):
            msg, reply, seconds = batched.get(index) or self._one(shared, metadata, keys)
            size = message_bytes(reply)
            folding = fold is not None and not (deadline and deadline.late(index, seconds, size))
            if folding:
                block = blocks[index] if blocks is not None else 0
                if block not in sums:
                    sums[block] = FoldSum(fold)
            if folding and sums[block].add(msg, reply):
                outcomes.append((None, seconds, size, message_payload_bytes(reply)))
            else:
                outcomes.append((reply, seconds, size, 0))
        states = {}
        if send_states:
            for metadata, _ in items:
                state = self.contexts[metadata.dst_node_id].state
                if len(state):
                    states[metadata.dst_node_id] = state
        folded = {block: reply for block, s in sums.items() if (reply := s.reply()) is not None}
        return outcomes, folded, states

    def _batched(self, shared: dict[int, Any], items: list[BatchItem]) -> dict[
            int, tuple[Message, Message, float]]:
        """Vectorized clients: the batch's train instructions that the ClientApp runs as one
        computation, by item index, each with an equal share of that computation's time
        (the virtual clock then scales it by the profile's speed, as for one client)."""
        train = [i for i, (md, _) in enumerate(items) if md.message_type == MessageType.TRAIN]
        if self.train_batch is None or len(train) < 2:
            return {}
        msgs = [make_message(metadata=items[i][0], content=RecordDict(
            {name: self.copy(shared[key]) for name, key in items[i][1].items()}))
            for i in train]
        contexts = [self.contexts[items[i][0].dst_node_id] for i in train]
        start = self.timer()
        try:
            replies, notes = self.train_batch(msgs, contexts, self.vectorize.budget_bytes)
        except Exception as exc:  # noqa: BLE001 - the clients then run one by one
            replies, notes = [None] * len(msgs), [f"batched training failed ({exc!r})"]
        elapsed = self.timer() - start
        for note in notes:
            if note not in self.notes:  # one line in the run log per kind of fallback
                self.notes.add(note)
                print(f"fedsim: vectorized clients ({self.profile}): {note}", file=sys.stderr,
                      flush=True)
        done = [(i, msg, reply) for i, msg, reply in zip(train, msgs, replies, strict=True)
                if reply is not None]
        share = elapsed / max(1, len(done))
        for _, msg, _ in done:
            node_id = msg.metadata.dst_node_id
            self.served[node_id] = self.served.get(node_id, 0) + 1
        self.vectorized += len(done)
        return {i: (msg, reply, share) for i, msg, reply in done}

    def _one(self, shared: dict[int, Any], metadata: Metadata,
             keys: dict[str, int]) -> tuple[Message, Message, float]:
        content = RecordDict({name: self.copy(shared[key]) for name, key in keys.items()})
        msg = make_message(metadata=metadata, content=content)
        node_id = metadata.dst_node_id
        start = self.timer()
        try:
            set_client_identity(msg)
            reply = self.app(msg, self.contexts[node_id])
        except Exception as exc:  # noqa: BLE001 - a client failure becomes an error reply
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
            reply = error_reply(msg, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason)
        seconds = self.timer() - start
        self.served[node_id] = self.served.get(node_id, 0) + 1
        return msg, reply, seconds
