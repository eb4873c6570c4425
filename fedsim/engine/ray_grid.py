"""``RayGrid``: Flower's ``Grid`` over resident Ray actors, one pool per device profile.

The ServerApp and its strategy call ``send_and_receive`` as on any Flower engine. A phase reads
as one loop: decide each client's fate for the round, group the messages by actor, dispatch one
batch per actor (the shared records inside the call when small, else put once in Ray's object
store), check each batch's replies as it arrives while the other actors still train, advance
the virtual clock and drop stragglers. No polling: the driver blocks in ``ray.wait``, with no
more torch threads than the actors leave it (``driver_threads``), and uses a core the actors
leave idle, or the gap before the slowest actor ends a phase, for work handed to
``run_while_waiting``.

A ClientApp that keeps ``Context.state`` (error-feedback residuals) has each node's state
copied back to the driver after every call (``client_state_backup``), so that when an actor
dies or hangs, the nodes it held resume on its replacement from their last completed call, as
on Flower's SuperNodes, which keep the Contexts when a ClientApp process dies.

An actor that goes away with its Ray node (a machine of the cluster lost) costs its clients
their work of the phase under way: they count as crashed, and the replacement starts on a live
node that can host the profile, waiting up to ``phase_timeout_s`` for one to join (docs/cluster.md).
An actor whose own process died on a live node runs its batch again one client per call on the
replacement, so that only the client that killed it fails (fault isolation).

Replies come back in the order of the instructions, whatever the number of actors and the order
in which they finish, so a seeded run gives the same results on 1 actor or 100.

With ``fold_train_replies`` (``engine.fold_replies``) each actor sums the clean train replies
of each fold block's clients into one (``fedsim.engine.fold``; a block is ``fold_block``
consecutive nodes of a profile, always on one actor): the phase returns one reply per block in
place of its folded clients, in the order of the block's first instruction, so the sum does not
depend on the actor count either; ``fold_counts`` says how many clients each stands for and
``fold_receipts`` what each folded client's reply measured, for the meter.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ray
from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.common.constant import ErrorCode

from fedsim.comm.tree_size import content_tree_bytes
from fedsim.config.schema import DeviceProfile
from fedsim.engine.actor import VectorizeOptions
from fedsim.engine.base import VirtualGrid, error_reply, node_context
from fedsim.engine.clock import VirtualClock, client_seconds
from fedsim.engine.fold import FoldDeadline, FoldReceipt, ReplyFold
from fedsim.engine.pool import ActorKey, ActorPools
from fedsim.engine.profiles import round_fate
from fedsim.engine.threads import driver_threads
from fedsim.engine.wire import drop_record_chunks, message_bytes

REPLACEMENT_GRACE_S = 30.0  # beyond engine.phase_timeout_s: a fresh actor's imports
TIMED_TYPES = ("train", "evaluate")  # message types the clock and the device fates apply to


@dataclass
class Delivery:
    """One instruction on its way: where it went and, once back, what came of it."""

    ins: Message
    timed: bool
    down_bytes: int
    fate: str | None = None  # unavailable | dropout | crashed | None
    reply: Message | None = None
    compute_s: float = 0.0
    up_bytes: int = 0
    folded: bool = False  # its reply was summed into its actor's folded reply

    @property
    def back(self) -> bool:
        return self.reply is not None or self.folded


def _server_round(msg: Message, fallback: int) -> int:
    for record in msg.content.values():
        if isinstance(record, ConfigRecord) and "server-round" in record:
            return int(record["server-round"])
    return fallback


def _array_bytes(records: Iterable[Any]) -> int:
    """The array payload of these records: what decides how Ray ships them."""
    return sum(len(array.data) for record in records if isinstance(record, ArrayRecord)
               for array in record.values())


RAY_INLINE_BYTES = 100 * 1024
"""Ray's own ``max_direct_call_object_size``: a task argument or result up to this size travels
inside the call, larger ones through the object store (a cluster fedsim joins keeps its own)."""


class RayGrid(VirtualGrid):
    """Runs the ClientApp ``client_app_ref`` ("module:attr") in Ray actor pools."""

    def __init__(self, client_app_ref: str, num_nodes: int, run_config: dict, *, seed: int = 0,
                 profiles: list[DeviceProfile] | None = None,
                 partition_profile: list[int] | None = None, deadline_s: float = 0.0,
                 compute_timer: str = "cpu", fixed_compute_s: float = 1.0,
                 phase_timeout_s: float = 0.0, actors_share_this_machine: bool = False,
                 partition_work: list[int] | None = None,
                 inline_bytes: int = RAY_INLINE_BYTES, client_state_backup: bool = True,
                 fold_block: int = 1, vectorize: VectorizeOptions | None = None) -> None:
        super().__init__(num_nodes, run_config, seed)
        self.seed = seed
        self.profiles = profiles or [DeviceProfile()]
        owner = partition_profile or [0] * num_nodes
        self.node_profile = {n: owner[i] for i, n in enumerate(self.node_ids)}
        self.fixed_compute_s = fixed_compute_s if compute_timer == "fixed" else None
        self.clock = VirtualClock(deadline_s)
        work = {n: float(partition_work[i]) for i, n in enumerate(self.node_ids)} \
            if partition_work is not None else None
        self.pools = ActorPools(self.profiles, self.node_profile, self._fresh_context,
                                client_app_ref, "cpu" if compute_timer == "fixed" else
                                compute_timer, node_work=work, block=fold_block,
                                vectorize=vectorize)
        self.dead_actors = 0
        self.phase_timeout_s = phase_timeout_s
        if phase_timeout_s:  # a replacement actor waits for a node no longer than a phase
            self.pools.ready_timeout_s = phase_timeout_s + REPLACEMENT_GRACE_S
            # and for a node that can host it to join (one that joins mid-run is used)
            self.pools.host_wait_s = phase_timeout_s
        # shared records up to this size travel inside each actor call (Ray's limit for
        # arguments it sends directly); larger ones are put in the object store once
        self.inline_bytes = inline_bytes
        # the last non-empty Context.state each node's actor sent back (node id -> state): a
        # replaced actor's nodes resume from it, as a SuperNode keeps its Contexts when a
        # ClientApp process dies (None: no copies; they start with empty states)
        self.state_backup: dict[int, Any] | None = {} if client_state_backup else None
        # torch threads of the driver while the actors train: the cores they leave here
        spare = int((os.cpu_count() or 1) - self.pools.cpus_held())
        self.waiting_threads = max(1, spare) if actors_share_this_machine else None
        self.spare_core = spare >= 1 or not actors_share_this_machine
        # the central evaluation runs beside training actors: one thread, whatever their
        # number (some kernels' bits depend on the thread count); a cluster's driver: all
        self.evaluation_threads = 1 if actors_share_this_machine else None
        # NumPy's BLAS threads for the whole run: its spinning workers would take the
        # actors' cores (fedsim.engine.threads.blas_threads)
        self.driver_blas_threads = self.waiting_threads
        self._idle_work: Callable[[], None] | None = None
        # how long work handed to a phase waits for a core to come free before it shares one
        # (so a long round's closing, and the progress bar, never lag by more)
        self.idle_patience_s = 1.0
        self._deliveries: dict[str, Delivery] = {}
        self._inflight: dict[Any, tuple[ActorKey, list[str]]] = {}
        self._calls: dict[Any, tuple[Any, list[Any]]] = {}  # ref -> (record table, items)
        # wall seconds spent recovering from dead actors (replacing them, running their
        # clients again): a phase's time limit does not count them
        self.recovery_s = 0.0
        self._phases = 0
        self._reply_bytes: dict[str, int] = {}  # reply id -> bytes measured in the actor
        self._instruction_bytes: dict[str, int] = {}  # instruction id -> bytes, last phase
        self._fold: ReplyFold | None = None
        self.fold_counts: dict[int, int] = {}  # id(folded reply) -> clients it stands for
        self.fold_receipts: list[FoldReceipt] = []  # each folded client's reply, measured
        self._folded_this_round = 0

    def _fresh_context(self, node_id: int):
        return node_context(self._run.run_id, node_id, self.partition_of[node_id],
                            len(self.node_ids), self.run_config)

    def fold_train_replies(self, fold: ReplyFold | None) -> None:
        """Fold the train replies of each actor's batch from the next phase on (None: stop)."""
        self._fold = fold

    # -- Grid ABC -------------------------------------------------------------------------
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self._phases += 1
        self._reply_bytes, self._instruction_bytes = {}, {}
        self.fold_counts, self.fold_receipts = {}, []
        folding = False
        batches: dict[ActorKey, list[str]] = {}
        shared: dict[int, Any] = {}  # id(record) -> record, each shared record once
        keys_of: dict[int, dict[str, int]] = {}  # id(content) -> {name: id(record)}
        ids = []
        for msg in messages:
            msg_id = self.accept(msg)
            ids.append(msg_id)
            content = msg.content
            kind = msg.metadata.message_type.split(".")[0]
            folding = folding or (kind == "train" and self._fold is not None)
            delivery = Delivery(msg, kind in TIMED_TYPES, 0)
            self._deliveries[msg_id] = delivery
            node = msg.metadata.dst_node_id
            if delivery.timed:
                delivery.fate = round_fate(self.profiles[self.node_profile[node]], self.seed,
                                           self.partition_of[node],
                                           _server_round(msg, self._phases),
                                           TIMED_TYPES.index(kind))
            if delivery.fate:
                delivery.reply = self.receive(msg, error_reply(
                    msg, ErrorCode.NODE_UNAVAILABLE, f"client {delivery.fate} (device profile)"))
                continue
            if id(content) not in keys_of:  # FedAvg: one content object for every message
                keys_of[id(content)] = {name: id(rec) for name, rec in content.items()}
                for record in content.values():
                    shared.setdefault(id(record), record)
            batches.setdefault(self.pools.placement[node], []).append(msg_id)
        # with a deadline, folding actors need the download sizes; else they wait till after
        deadline = folding and self.clock.deadline_s > 0
        if deadline:
            self._size_downlinks(ids)
        if batches:
            for record in shared.values():  # a meter may have left chunk views behind
                drop_record_chunks(record)
            small = _array_bytes(shared.values()) <= self.inline_bytes
            table = shared if small else ray.put(shared)
            for key, batch in batches.items():
                items = [(self._deliveries[i].ins.metadata,
                          keys_of[id(self._deliveries[i].ins.content)]) for i in batch]
                late = FoldDeadline(self.profiles[key[0]], self.clock.deadline_s,
                                    self.fixed_compute_s,
                                    [self._deliveries[i].down_bytes for i in batch]) \
                    if deadline else None
                blocks = [self.pools.node_block[self._deliveries[i].ins.metadata.dst_node_id]
                          for i in batch] if folding else None
                ref = self.pools.actor(key).handle.remote(
                    table, items, self._fold if folding else None, late,
                    self.state_backup is not None, blocks)
                self._inflight[ref] = (key, batch)
                self._calls[ref] = (table, items)  # to run them again if the actor dies
        if not deadline:  # the clock's download sizes, while the actors already train
            self._size_downlinks(ids)
        return ids

    def _size_downlinks(self, ids: list[str]) -> None:
        """Each instruction's serialized size (one tree walk per shared content object)."""
        sizes: dict[int, int] = {}
        for msg_id in ids:
            delivery = self._deliveries[msg_id]
            content = delivery.ins.content
            if id(content) not in sizes:
                sizes[id(content)] = content_tree_bytes(content)
            delivery.down_bytes = message_bytes(delivery.ins, sizes[id(content)])
            self._instruction_bytes[msg_id] = delivery.down_bytes

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        ids = list(message_ids)
        if self._inflight:
            done, _ = ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=0)
            self._gather(done)
        return self._release(ids)

    def run_while_waiting(self, work: Callable[[], None]) -> None:
        """Run ``work`` in this process during the next ``send_and_receive``, on a core no
        actor is using: at once if the actors leave one free, else as soon as the first batch
        is back while others still run (the gap until the slowest actor ends the phase), and
        after ``idle_patience_s`` in any case, beside the actors. If the phase ends first, it
        drops the work and the caller runs it afterwards. ``work`` must not use this grid.
        The round loop uses it for the previous round's central evaluation and row.
        """
        self._idle_work = work

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        ids = list(self.push_messages(messages))
        pushed = set(ids)
        mine = [ref for ref, (_, batch) in self._inflight.items() if batch[0] in pushed]
        limit = timeout if timeout is not None else (self.phase_timeout_s or None)
        deadline = None if limit is None else time.monotonic() + limit
        recovered_before = self.recovery_s
        work, self._idle_work = self._idle_work, None
        patience = time.monotonic() + self.idle_patience_s
        with driver_threads(self.waiting_threads):
            if work is not None and mine and self.spare_core:
                work()
                work = None
            while mine:  # each batch is checked as it arrives, while the others still run
                left = None if deadline is None else max(
                    0.0, deadline + self.recovery_s - recovered_before - time.monotonic())
                wait, for_work = left, False
                if work is not None:
                    until = max(0.0, patience - time.monotonic())
                    if left is None or until < left:
                        wait, for_work = until, True
                done, mine = ray.wait(mine, num_returns=1, timeout=wait)
                self._gather(done)
                if not done and not for_work:  # the phase's time limit
                    break
                if work is not None and mine:  # a core came free, or the work waited enough
                    work()
                    work = None
        for ref in mine:  # a hung or slow actor: its clients fail, the actor is replaced
            key, batch = self._inflight.pop(ref)
            self._calls.pop(ref, None)
            self._fail(batch, "timed_out", ErrorCode.REPLY_MESSAGE_UNAVAILABLE,
                       f"no reply within {limit:g} s (engine.phase_timeout_s); the actor "
                       "running this client was replaced")
            self._replace(key)
        return self._release(ids)

    # -- gather, check, clock -------------------------------------------------------------
    def _gather(self, refs: list[Any]) -> None:
        """Turn finished batches into checked replies; a dead actor's batch into errors."""
        for ref in refs:
            key, batch = self._inflight.pop(ref)
            table, items = self._calls.pop(ref)
            try:
                outcomes, folded, states = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                started = time.monotonic()
                self.dead_actors += 1
                lost = self.pools.lost_with_node(key, exc)
                if lost is None:  # its own process died: find the client that killed it
                    self._replace(key)
                    self._rerun_singly(key, batch, table, items)
                else:  # its node went away, and this round's work of its clients with it
                    self._node_lost(key, batch, lost)
                self.recovery_s += time.monotonic() - started
                continue
            except Exception as exc:  # noqa: BLE001 - an engine error must not hang the run
                self._fail(batch, "crashed", ErrorCode.UNKNOWN, traceback.format_exc(limit=4)
                           or str(exc))
                continue
            self._accept(batch, outcomes, folded, states)

    def _node_lost(self, key: ActorKey, batch: list[str], node: str) -> None:
        """The actor ``key`` went away with its Ray node ``node``: the clients of ``batch``
        count as crashed in this round (as clients on a machine that dies mid-round), and a
        replacement actor starts on a live node that can host the profile (one that joins
        meanwhile included), or the run stops resumably (:class:`ProfileUnhostable`)."""
        name = self.profiles[key[0]].name
        print(f"fedsim: Ray node {node[:8]} was lost with an actor of profile {name!r}: its "
              f"{len(batch)} client(s) of this phase count as crashed; starting a replacement",
              file=sys.stderr, flush=True)
        self._fail(batch, "crashed", ErrorCode.CLIENT_APP_CRASHED,
                   f"the Ray node {node[:8]} running this client's actor was lost")
        self._replace(key)

    def _rerun_singly(self, key: ActorKey, batch: list[str], table: Any,
                      items: list[Any]) -> None:
        """Fault isolation: the actor ``key`` died during ``batch``, so its replies are lost.
        Run its clients again on the replacement, one call each, in order: calls on an actor
        run one after the other, so the first call that fails is the client that killed it
        (it alone gets the error reply), and the calls queued behind it go again on the next
        replacement. Each round of this loop blames one client; clients seed everything
        from (seed, partition, round) and resume from their kept state, so their replies
        are those the lost batch would have carried (not folded: each travels on its own)."""
        pending = list(zip(batch, items, strict=True))
        limit = self.phase_timeout_s or None
        while pending:
            actor = self.pools.actor(key)
            refs = [actor.handle.remote(table, [item], None, None,
                                        self.state_backup is not None, None)
                    for _, item in pending]
            done = 0
            for (msg_id, _), ref in zip(pending, refs, strict=True):
                try:
                    outcomes, folded, states = ray.get(ref, timeout=limit)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                    hung = isinstance(exc, ray.exceptions.GetTimeoutError)
                    self._fail([msg_id], "timed_out" if hung else "crashed",
                               ErrorCode.REPLY_MESSAGE_UNAVAILABLE if hung
                               else ErrorCode.CLIENT_APP_CRASHED,
                               f"no reply within {limit:g} s (engine.phase_timeout_s)" if hung
                               else f"the actor running this client died: {exc}")
                    self.dead_actors += not hung
                    self._replace(key)
                    done += 1
                    break
                self._accept([msg_id], outcomes, folded, states)
                done += 1
            pending = pending[done:]

    def _accept(self, batch: list[str], outcomes: list[Any], folded: dict[int, Message],
                states: dict[int, Any]) -> None:
        """Check the replies of a finished batch (and keep the states it sent back)."""
        if self.state_backup is not None:
            self.state_backup.update(states)
        carriers: dict[int, list] = {}  # fold block -> [its first folded client, count]
        for msg_id, (reply, compute_s, up_bytes, payload) in zip(batch, outcomes,
                                                                strict=True):
            d = self._deliveries[msg_id]
            d.compute_s = compute_s if self.fixed_compute_s is None else self.fixed_compute_s
            d.up_bytes = up_bytes
            if reply is None:
                d.folded = True  # the block's first folded client carries its reply
                carriers.setdefault(self.pools.node_block[d.ins.metadata.dst_node_id],
                                    [d, 0])[1] += 1
                self.fold_receipts.append(
                    FoldReceipt(d.ins.metadata.dst_node_id, up_bytes, payload))
                continue
            d.reply = self.receive(d.ins, reply)
            if d.reply is reply:  # accepted as sent: the actor measured this very message
                self._reply_bytes[reply.metadata.message_id] = up_bytes
        for block, (carrier, count) in carriers.items():
            carrier.reply = self.receive(carrier.ins, folded[block])
            self.fold_counts[id(carrier.reply)] = count
            self._folded_this_round += count

    def _replace(self, key: ActorKey) -> None:
        """A fresh actor for ``key``; its nodes resume from the states kept for them."""
        kept = self.state_backup or {}
        self.pools.replace(key, {self.partition_of[n]: kept[n]
                                 for n in self.pools.nodes_of[key] if n in kept})

    def _fail(self, batch: list[str], fate: str, code: int, reason: str) -> None:
        for msg_id in batch:
            d = self._deliveries[msg_id]
            d.fate = fate
            d.reply = self.receive(d.ins, error_reply(d.ins, code, reason))

    def _release(self, ids: list[str]) -> list[Message]:
        """Replies of ``ids`` that are back, in instruction order, stragglers dropped."""
        back = [self._deliveries.pop(i) for i in ids
                if i in self._deliveries and self._deliveries[i].back]
        timed = [d for d in back if d.timed and d.fate is None]
        if not any(d.timed for d in back):
            return [d.reply for d in back if d.reply is not None]
        fates: dict[str, int] = {}
        for d in back:
            if d.fate:
                fates[d.fate] = fates.get(d.fate, 0) + 1
        times = [client_seconds(self.profiles[self.node_profile[d.ins.metadata.dst_node_id]],
                                d.down_bytes, d.compute_s, d.up_bytes) for d in timed]
        on_time = self.clock.phase(times, fates)
        late = {id(d) for d, ok in zip(timed, on_time, strict=True) if not ok}
        return [d.reply for d in back if id(d) not in late and d.reply is not None]

    # -- what the round loop and the tests read -------------------------------------------
    def measured_instruction_bytes(self, messages: list[Message]) -> list[int | None]:
        """Serialized bytes of each instruction of the last phase, as the clock sized them
        (the meter's own measure: one tree walk per shared content); None if not sent."""
        return [self._instruction_bytes.get(m.metadata.message_id) for m in messages]

    def measured_reply_bytes(self, replies: list[Message]) -> list[int | None]:
        """Serialized bytes of each reply of the last phase as measured in its actor (exact,
        ``fedsim.comm.tree_size``); None for replies made here (errors, rejected replies)."""
        return [self._reply_bytes.get(r.metadata.message_id) for r in replies]

    def end_round(self) -> dict[str, Any]:
        """Simulated time and device events of the round just finished (metrics.jsonl), and
        with ``fold_train_replies`` the clients whose replies were folded (``folded_replies``)."""
        report = self.clock.end_round()
        if self._fold is not None:
            report["folded_replies"] = self._folded_this_round
        self._folded_this_round = 0
        return report

    def export_client_states(self) -> dict[int, Any]:
        """Each node's persistent ``Context.state``, by partition id (for checkpoints)."""
        return self.pools.export_states()

    def import_client_states(self, states: dict[int, Any]) -> None:
        self.pools.import_states(states)
        if self.state_backup is not None:
            self.state_backup.update({self.node_ids[int(pid)]: state
                                      for pid, state in states.items() if len(state)})

    def describe_actors(self) -> list[dict[str, Any]]:
        return self.pools.describe()

    def shutdown(self) -> None:
        self.pools.shutdown()
