"""A Flower ``Grid`` that calls the ClientApp in the driver process, one client after another.

No Ray, no SuperLink: the fastest way to run a small federation and the engine the unit tests
use. Each virtual node keeps its own ``Context`` across rounds, as on Flower's engines. A
ClientApp exception becomes an error reply (``CLIENT_APP_RAISED_EXCEPTION``), exactly as Flower
reports it, so strategies count it and go on.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SUPERLINK_NODE_ID = 1


def set_server_identity(run_id: int) -> None:
    """Give the driver process the ServerApp's task identity (needed to build Messages)."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID


def make_node_ids(num_nodes: int, seed: int) -> list[int]:
    """Distinct 63-bit node ids (0 and 1 are reserved by Flower), reproducible from ``seed``."""
    rng = random.Random(seed)
    ids: set[int] = set()
    while len(ids) < num_nodes:
        ids.add(rng.randrange(2, 2**63))
    return sorted(ids)


def node_contexts(run_id: int, node_ids: list[int], run_config: dict) -> dict[int, Context]:
    """One Context per virtual node with Flower's simulation node_config keys."""
    return {
        node_id: Context(run_id=run_id, node_id=node_id,
                         node_config={"partition-id": i, "num-partitions": len(node_ids)},
                         state=RecordDict(), run_config=dict(run_config))
        for i, node_id in enumerate(node_ids)
    }


def error_reply(msg: Message, code: int, reason: str) -> Message:
    """The error reply Flower sends when a ClientApp fails."""
    return Message(Error(code=code, reason=reason), reply_to=msg)


class InProcessGrid(Grid):
    """Runs ``client_app`` for each message synchronously in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: dict,
                 seed: int = 0) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(random.Random(seed).randrange(1, 2**63))
        self.node_ids = make_node_ids(num_nodes, seed)
        self.contexts = node_contexts(self._run.run_id, self.node_ids, run_config)
        self._pending: dict[str, Message] = {}
        set_server_identity(self._run.run_id)

    # -- Grid ABC -------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return Run(**vars(self._run))

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, ttl=ttl,
                       group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = uuid4().hex
            msg.metadata.__dict__["_message_id"] = msg_id
            self._pending[msg_id] = self._handle(msg)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._pending.pop(i) for i in message_ids if i in self._pending]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))

    # -- client state (for checkpoints) ---------------------------------------------------
    def export_client_states(self) -> dict[int, RecordDict]:
        """Each node's persistent ``Context.state``, by partition id."""
        return {int(ctx.node_config["partition-id"]): ctx.state for ctx in self.contexts.values()}

    def import_client_states(self, states: dict[int, RecordDict]) -> None:
        for ctx in self.contexts.values():
            pid = int(ctx.node_config["partition-id"])
            if pid in states:
                ctx.state = states[pid]

    # -- client execution -----------------------------------------------------------------
    def _handle(self, msg: Message) -> Message:
        context = self.contexts.get(msg.metadata.dst_node_id)
        if context is None:
            return error_reply(msg, ErrorCode.UNKNOWN, f"no node {msg.metadata.dst_node_id}")
        saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
        try:
            TaskIdentity._node_id = msg.metadata.dst_node_id
            reply = self.client_app(msg, context)
        except Exception as exc:  # noqa: BLE001 - a client failure must not end the run
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            reply = error_reply(msg, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason)
        finally:
            TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
        reply.metadata.__dict__["_message_id"] = uuid4().hex
        return reply
