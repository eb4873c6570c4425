"""The round loop of a fedsim run: what the ServerApp does, identically under every engine.

Per round: the strategy configures training, the Grid carries the messages and meters them in
both directions (a :class:`~fedsim.engine.metering_grid.MeteringGrid` around the engine's grid,
the layer a foreign Flower app is metered by too), the strategy aggregates, then federated and
central evaluation when due, and one record is appended to metrics.jsonl. Written out (rather
than ``Strategy.start``) for the evaluation cadence and per-round records; the strategy only
sees its usual hooks.

A round's times end when its model is ready. What is left of it (the central evaluation and
its row) needs only that model, so an engine that can (``run_while_waiting``, fedsim's Ray
grid) runs it during the next round's training on a core the actors leave idle; the row is
always written before the next one, and a round that checkpoints or ends the run closes at once.
"""

from __future__ import annotations

import copy
import functools
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from clients.setup import SETUP_KEY, ClientSetup
from fedsim.checkpoint import (
    Checkpoint,
    arrays_to_numpy,
    capture_rng,
    drop_rounds_after,
    load_checkpoint,
    numpy_to_arrays,
    object_state,
    restore_rng,
    save_checkpoint,
    truncate_metrics,
)
from fedsim.comm.meter import CommMeter
from fedsim.config.schema import EngineConfig, ExperimentConfig
from fedsim.engine.metering_grid import MeteringGrid
from fedsim.engine.threads import driver_threads
from fedsim.results.plots import plot_runs
from fedsim.results.summary import summarize
from fedsim.results.writer import (
    METRICS_FILE,
    PROBLEMS_FILE,
    ResultsWriter,
    metric_column,
    read_metrics,
)
from fedsim.tasks.device import resolve_device
from fedsim.tasks.kind import task_kind
from strategies.registry import Sampling, get_strategy
from strategies.robust import configure_robustness

log = logging.getLogger("fedsim")


def discover_partitions(grid: Grid, expected: int, timeout: float = 600.0,
                        problems: list[dict[str, Any]] | None = None) -> dict[int, int]:
    """Ask every node which partition it holds (one ``query`` round); wait for ``expected``.

    A reply without a ``node`` ConfigRecord holding an integer ``partition-id`` in
    ``0..expected-1``, or naming a partition another node also claims (both are refused: the
    server cannot tell which is genuine), is refused: its node is never sampled, and why is
    logged and appended to ``problems`` (client_problems.jsonl)."""
    deadline = time.monotonic() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(node_ids)} of {expected} clients connected "
                               f"within {timeout:.0f} s")
        time.sleep(0.5)
    question = RecordDict({"q": ConfigRecord({"ask": "partition-id"})})
    messages = [Message(question, dst_node_id=n, message_type=MessageType.QUERY)
                for n in node_ids]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    asked = {msg.metadata.message_id: msg.metadata.dst_node_id for msg in messages}
    claims: dict[int, tuple[str | None, int, bool]] = {}  # node -> (problem, partition, error)
    for reply in replies:
        node = reply.metadata.src_node_id
        if node not in asked.values():  # the SuperLink's error reply for a node that is gone
            node = asked.get(reply.metadata.reply_to_message_id, node)
        if reply.has_error():
            claims[node] = (str(reply.error.reason), -1, True)
        else:
            claims[node] = (*partition_reply_problem(reply, expected), False)
    holders: dict[int, list[int]] = {}
    for node, (reason, pid, _) in claims.items():
        if reason is None:
            holders.setdefault(pid, []).append(node)
    mapping: dict[int, int] = {}
    refused: list[dict[str, Any]] = []
    for node, (reason, pid, error) in sorted(claims.items()):
        if reason is None and len(holders[pid]) > 1:
            others = ", ".join(str(n) for n in sorted(holders[pid]) if n != node)
            reason = (f"node.partition-id = {pid} is also claimed by node {others}: both are "
                      f"refused (start each node with its own --partition-id)")
        if reason is None:
            mapping[node] = pid
            continue
        refused.append({"round": 0, "phase": "query", "kind": "failed" if error else "rejected",
                        "partition": None, "node": int(node), "reason": reason})
        log.warning("node %d refused: %s", node,
                    (reason.strip().splitlines() or ["no reason given"])[0])
    if problems is not None:
        problems.extend(refused)
    if not mapping:
        raise RuntimeError("no client answered the partition query"
                           + (f" usably ({refused[0]['reason']})" if refused else ""))
    return mapping


def partition_reply_problem(reply: Message, expected: int) -> tuple[str | None, int]:
    """(why a partition-query reply is unusable or None, the partition id it names)."""
    configs = reply.content.config_records
    if "node" not in configs:
        return f"the reply holds no ConfigRecord 'node' (got {sorted(reply.content)})", -1
    pid = configs["node"].get("partition-id")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return (f"node.partition-id = {str(pid)[:40]!r} is not an integer "
                f"(0..{expected - 1})"), -1
    if not 0 <= pid < expected:
        return f"node.partition-id = {pid} is outside 0..{expected - 1}", -1
    return None, pid


def _due(every: int, server_round: int, last: int) -> bool:
    return server_round == last or (every > 0 and server_round % every == 0)


def _metric_values(record: Any, prefix: str) -> dict[str, float]:
    """The aggregated reply metrics as ``<prefix><name>`` columns; a name that is not a plain
    column name is left out (``fedsim.results.writer.metric_column``)."""
    if record is None:
        return {}
    out = {}
    for key, value in record.items():
        if key == "num-examples":
            continue
        column = metric_column(prefix, key.removeprefix("train-").removeprefix("eval-"))
        if column is None:
            log.warning("metric %r from the clients' replies left out of metrics.jsonl (not "
                        "a plain column name)", str(key)[:60])
            continue
        out[column] = value
    return out


def _add_columns(record: dict[str, Any], values: dict[str, Any]) -> None:
    """Add reply metrics to a round's record; a column fedsim already wrote is kept."""
    for column, value in values.items():
        if column in record:
            log.warning("metric column %r from the clients' replies left out: fedsim writes "
                        "that column itself", column)
            continue
        record[column] = value


def _reply_folding(cfg: ExperimentConfig, grid: Grid) -> bool:
    """Whether this run folds train replies in the engine (``engine.fold_replies``)."""
    if not cfg.engine.fold_replies:
        if cfg.engine.fold_block != EngineConfig.fold_block:
            log.warning("engine.fold_block = %d is ignored: replies are folded only with "
                        "engine.fold_replies = true", cfg.engine.fold_block)
        return False
    if not hasattr(grid, "fold_train_replies"):
        log.warning("engine.fold_replies is ignored: only the fedsim Ray engine folds replies")
        return False
    return True


class OnceLater:
    """At most one piece of work held back to run exactly once: by whoever calls ``run``
    first (the grid while its actors train, or the round loop after the phase)."""

    def __init__(self) -> None:
        self._work: Callable[[], None] | None = None

    @property
    def waiting(self) -> bool:
        return self._work is not None

    def set(self, work: Callable[[], None]) -> None:
        self.run()
        self._work = work

    def run(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            work()


class StopAtRoundEnd:
    """The first Ctrl-C asks the loop to stop after the current round (so the checkpoint holds
    a round boundary: no half-updated strategy, meter or client state); a second one stops now.
    Only installed where Python allows it (the main thread)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stopping after this round (Ctrl-C again to stop now)")

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _export_client_states(grid: Grid) -> dict[int, Any] | None:
    """Client state held by the engine, by partition id (None if the engine cannot export)."""
    export = getattr(grid, "export_client_states", None)
    return export() if export else None


def _resume(ckpt: Checkpoint, strategy: Any, meter: CommMeter, grid: Grid,
            run_dir: Path) -> tuple[int, float, ArrayRecord]:
    """Restore a checkpoint; return (first round to run, clock offset, global arrays)."""
    vars(strategy).update(ckpt.strategy_state)
    if ckpt.meter_state is not None:
        vars(meter).update(ckpt.meter_state)
    if ckpt.client_states is not None and hasattr(grid, "import_client_states"):
        grid.import_client_states(ckpt.client_states)
    restore_rng(ckpt.rng)
    truncate_metrics(run_dir / METRICS_FILE, ckpt.metrics_lines)
    drop_rounds_after(run_dir / PROBLEMS_FILE, ckpt.round)
    log.info("resuming after round %d", ckpt.round)
    return ckpt.round + 1, ckpt.wall_seconds, numpy_to_arrays(ckpt.arrays)


def _report_problems(problems: list[dict[str, Any]], rnd: int, writer: ResultsWriter) -> None:
    """Keep why replies were dropped (client_problems.jsonl) and say so once per round."""
    if not problems:
        return
    writer.write_problems(problems)
    first = problems[0]
    reason = (first["reason"].strip().splitlines() or ["no reason given"])[0]
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    pid = first.get("partition")
    source = f"partition {pid}" if pid is not None and pid >= 0 else f"node {first.get('node')}"
    log.warning("round %d: %s %s reply of %s dropped (%s)%s; every dropped reply "
                "is in client_problems.jsonl", rnd, first["phase"], first["kind"],
                source, reason, more)


def _with_changes(cfg: ExperimentConfig, changes: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with ``{"section.key": value}`` replaced (the task kind's prepared settings)."""
    if not changes:
        return cfg
    out = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(out, section), key, value)
    return out


def run_federation(grid: Grid, cfg: ExperimentConfig, run_dir: Path,
                   meter: CommMeter | None = None) -> dict[str, Any]:
    """Run all rounds of ``cfg`` over ``grid``, writing the results folder ``run_dir``.

    Every message goes through a :class:`~fedsim.engine.metering_grid.MeteringGrid` around
    ``grid`` that meters it (training phases in ``meter``, a new ``CommMeter`` if None); the
    loop closes its rounds."""
    start = time.monotonic()
    grid = MeteringGrid(grid, meter)
    meter = grid.meter
    random.seed(cfg.seed)  # Flower's samplers draw from the global `random`
    spec = get_strategy(cfg.strategy_name)
    params = spec.params_cls(**cfg.strategy_params)
    n = cfg.task.num_clients
    fed_clients = (cfg.eval.federated_clients or n) if cfg.eval.federated_every else 0
    strategy = spec.build_server(params, Sampling(n, cfg.train.clients_per_round, fed_clients))
    refused_nodes: list[dict[str, Any]] = []
    strategy.bind_nodes(discover_partitions(grid, n, problems=refused_nodes), cfg.seed)
    grid.end_side_traffic()  # the partition query's bytes are in no round
    strategy.node_wait_s = cfg.train.node_wait_s

    kind = task_kind(cfg)
    setup_changes = kind.prepare(run_dir)
    setup = ClientSetup.from_experiment(_with_changes(cfg, setup_changes)).to_json()
    evaluator = kind.central_evaluator(run_dir, resolve_device(cfg.eval.device, "eval.device")
                                       if kind.evaluates_on_gpu else None)
    arrays = kind.initial_arrays()
    first_round, clock_offset = 1, 0.0
    ckpt = load_checkpoint(run_dir)
    if ckpt is not None:
        first_round, clock_offset, arrays = _resume(ckpt, strategy, meter, grid, run_dir)
    configure_robustness(strategy, cfg)  # [robust], from the config even on resume
    writer = ResultsWriter(run_dir)
    if ckpt is None:  # a resumed run keeps the query's problems from its first start
        _report_problems(refused_nodes, 0, writer)

    def checkpoint(done: int) -> None:
        save_checkpoint(run_dir, Checkpoint(
            round=done, arrays=arrays_to_numpy(arrays), strategy_state=object_state(strategy),
            meter_state=object_state(meter),
            client_states=_export_client_states(grid),
            wall_seconds=clock_offset + time.monotonic() - start,
            metrics_lines=done + 1, rng=capture_rng()))

    def evaluate(model: ArrayRecord, rnd: int) -> dict[str, Any]:
        """The central evaluation, on the engine's thread count for it (one whatever the
        number of actors, on the Ray engine beside them) so that its bits do not vary."""
        with driver_threads(getattr(grid, "evaluation_threads", None)):
            return evaluator(model, rnd)

    def close_round(rnd: int, record: dict[str, Any], model: ArrayRecord,
                    problems: list[dict[str, Any]]) -> None:
        """What is left of a round once its model is ready: central evaluation, its row."""
        # the meter's per-client snapshot of the round holds till the next round ends
        record.update(grid.client_traffic(getattr(strategy, "node_partitions", {}) or {}))
        if _due(cfg.eval.central_every, rnd, cfg.train.rounds):
            record.update(evaluate(model, rnd))
        _report_problems(problems, rnd, writer)
        writer.write_round(record)

    folding = _reply_folding(cfg, grid)
    # engines that can run the last round's closing while the actors train the next round
    overlap = hasattr(grid, "run_while_waiting")
    pending = OnceLater()
    stop = StopAtRoundEnd()
    try:
        if ckpt is None:
            writer.write_round({"round": 0, **evaluate(arrays, 0), "wall_seconds": 0.0})
        t_ready = time.monotonic()  # when the previous round's model was ready
        for rnd in range(first_round, cfg.train.rounds + 1):
            record: dict[str, Any] = {"round": rnd}
            messages = list(strategy.configure_train(
                rnd, arrays, ConfigRecord({SETUP_KEY: setup}), grid))
            if folding:
                grid.fold_train_replies(strategy.reply_fold())
            if pending.waiting:
                grid.run_while_waiting(pending.run)
            replies = list(grid.send_and_receive(messages))
            pending.run()  # unless the grid has run it while the actors trained
            new_arrays, train_metrics = strategy.aggregate_train(rnd, replies)
            if new_arrays is not None:
                arrays = kind.server_update(new_arrays, rnd)
            _add_columns(record, _metric_values(train_metrics, "train_"))
            record.update(strategy.round_report)
            record.update(grid.end_round_traffic())
            if fed_clients and _due(cfg.eval.federated_every, rnd, cfg.train.rounds):
                eval_messages = list(strategy.configure_evaluate(
                    rnd, arrays, ConfigRecord({SETUP_KEY: setup}), grid))
                eval_metrics = strategy.aggregate_evaluate(
                    rnd, grid.send_and_receive(eval_messages))
                _add_columns(record, _metric_values(eval_metrics, "federated_"))
                for key in ("evaluate_failures", "evaluate_rejected", "evaluate_empty"):
                    record[key] = strategy.round_report.get(key, 0)
            record.update(grid.end_side_traffic())
            record.update(grid.end_clock_round())  # engines with a virtual clock (Ray grid)
            # the round's times end when its model is ready; its central evaluation is
            # counted in the next round's, or hidden there by an engine that overlaps it
            now = time.monotonic()
            record["round_seconds"], t_ready = now - t_ready, now
            record["wall_seconds"] = clock_offset + now - start
            pending.set(functools.partial(close_round, rnd, record, arrays,
                                          list(getattr(strategy, "reply_problems", []))))
            every = cfg.output.checkpoint_every
            checkpoint_due = every and (rnd % every == 0 or rnd == cfg.train.rounds
                                        or stop.requested)
            if not overlap or checkpoint_due or stop.requested or rnd == cfg.train.rounds:
                pending.run()
            if checkpoint_due:
                checkpoint(rnd)
            if stop.requested:
                raise KeyboardInterrupt
    finally:
        stop.restore()
        try:
            pending.run()  # a failed round still leaves the row of the one before it
        finally:
            writer.close()
    rows = read_metrics(run_dir)
    summary = {"name": cfg.name, "strategy": cfg.strategy_name, "dataset": cfg.task.dataset,
               "model": cfg.task.model, "num_clients": n,
               "num_params": sum(a.numpy().size for a in arrays.values()),
               **summarize(rows, cfg.eval.target_accuracy)}
    writer.write_summary(summary)
    if cfg.output.plots:
        plot_runs({cfg.name: rows}, run_dir, cfg.eval.target_accuracy)
    return summary
