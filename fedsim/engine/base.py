"""What every fedsim Grid shares: virtual nodes, their Contexts, message ids and checks.

Flower's ``Grid`` (``flwr.serverapp.Grid``) is the seam between the ServerApp and whatever carries
its messages. Both fedsim grids (in-process and Ray) are :class:`VirtualGrid` subclasses: N
virtual nodes with reproducible ids, one ``Context`` per node with Flower's simulation
``node_config`` (``partition-id``, ``num-partitions``), the ServerApp's ``TaskIdentity``, the
message ids a SuperLink would assign, and the checks a SuperLink makes on instructions and
replies (docs/design-notes.md#what-a-grid-must-do-for-a-serverapp). Subclasses implement only
delivery.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.common.constant import ErrorCode
from flwr.server.utils.validator import validate_message
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SUPERLINK_NODE_ID = 1


def set_server_identity(run_id: int) -> None:
    """Give this process the ServerApp's task identity (``Message(...)`` needs it)."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID


def save_identity() -> tuple:
    """The process-global TaskIdentity, to restore after running a ClientApp in this process."""
    return TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id


def restore_identity(saved: tuple) -> None:
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def set_client_identity(msg: Message) -> None:
    """Identity of the node that handles ``msg`` (for ClientApps that build new Messages)."""
    md = msg.metadata
    TaskIdentity._task_id = md.dst_task_id or 1
    TaskIdentity._run_id = md.run_id
    TaskIdentity._node_id = md.dst_node_id


def make_node_ids(num_nodes: int, seed: int) -> list[int]:
    """Distinct 63-bit node ids (0 and 1 are reserved by Flower), reproducible from ``seed``."""
    rng = random.Random(seed)
    ids: set[int] = set()
    while len(ids) < num_nodes:
        ids.add(rng.randrange(2, 2**63))
    return sorted(ids)


def node_context(run_id: int, node_id: int, partition_id: int, num_partitions: int,
                 run_config: dict) -> Context:
    """A fresh Context for one virtual node, with Flower's simulation node_config keys."""
    return Context(run_id=run_id, node_id=node_id,
                   node_config={"partition-id": partition_id, "num-partitions": num_partitions},
                   state=RecordDict(), run_config=dict(run_config))


def node_contexts(run_id: int, node_ids: list[int], run_config: dict) -> dict[int, Context]:
    """One Context per virtual node; node ``node_ids[i]`` holds partition ``i``."""
    return {node_id: node_context(run_id, node_id, i, len(node_ids), run_config)
            for i, node_id in enumerate(node_ids)}


def error_reply(msg: Message, code: int, reason: str) -> Message:
    """The error reply Flower sends when a ClientApp fails (strategies count and skip it)."""
    return Message(Error(code=code, reason=reason), reply_to=msg)


def assign_message_id(msg: Message) -> str:
    """Give ``msg`` the id a SuperLink would (the public constructors leave it empty)."""
    msg_id = uuid4().hex
    msg.metadata.__dict__["_message_id"] = msg_id
    return msg_id


class VirtualGrid(Grid):
    """A Grid over N virtual nodes; subclasses deliver the messages.

    Node ``node_ids[i]`` holds partition ``i``. ``push_messages`` of subclasses should call
    :meth:`accept` on every instruction and :meth:`receive` on every reply.
    """

    def __init__(self, num_nodes: int, run_config: dict, seed: int = 0) -> None:
        self._run = Run.create_empty(random.Random(seed).randrange(1, 2**63))
        self.run_config = dict(run_config)
        self.node_ids = make_node_ids(num_nodes, seed)
        self.partition_of = {n: i for i, n in enumerate(self.node_ids)}
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

    # -- SuperLink duties -----------------------------------------------------------------
    def accept(self, msg: Message) -> str:
        """Give an instruction its id and check it as a SuperLink would (ValueError if bad)."""
        msg_id = assign_message_id(msg)
        problems = validate_message(msg, is_reply_message=False)
        if msg.metadata.dst_node_id not in self.partition_of:
            problems.append(f"unknown destination node {msg.metadata.dst_node_id}")
        if problems:
            raise ValueError(f"invalid instruction message: {'; '.join(problems)}")
        return msg_id

    def receive(self, ins: Message, reply: Message) -> Message:
        """Give a reply its id; a reply that does not answer ``ins`` becomes an error reply."""
        assign_message_id(reply)
        problems = validate_message(reply, is_reply_message=True)
        md, imd = reply.metadata, ins.metadata
        if md.reply_to_message_id != imd.message_id:
            problems.append("reply_to_message_id does not match the instruction")
        if md.src_node_id != imd.dst_node_id or md.run_id != imd.run_id:
            problems.append("reply comes from another node or run")
        if not problems:
            return reply
        bad = error_reply(ins, ErrorCode.UNKNOWN, "invalid reply: " + "; ".join(problems))
        assign_message_id(bad)
        return bad
