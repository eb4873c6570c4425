"""A Flower ``Grid`` that calls the ClientApp in the driver process, one client after another.

No Ray, no SuperLink: the fastest way to run a small federation and the engine the unit tests
use. Each virtual node keeps its own ``Context`` across rounds, as on Flower's engines. A
ClientApp exception becomes an error reply (``CLIENT_APP_RAISED_EXCEPTION``), exactly as Flower
reports it, so strategies count it and go on.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedsim.engine.base import (
    SUPERLINK_NODE_ID,
    VirtualGrid,
    error_reply,
    node_contexts,
    restore_identity,
    save_identity,
    set_client_identity,
    set_server_identity,
)

__all__ = ["SUPERLINK_NODE_ID", "InProcessGrid", "set_server_identity"]


class InProcessGrid(VirtualGrid):
    """Runs ``client_app`` for each message synchronously in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: dict,
                 seed: int = 0) -> None:
        super().__init__(num_nodes, run_config, seed)
        self.client_app = client_app
        self.contexts = node_contexts(self._run.run_id, self.node_ids, self.run_config)
        self._pending: dict[str, Message] = {}

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = self.accept(msg)
            self._pending[msg_id] = self.receive(msg, self._handle(msg))
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
        context = self.contexts[msg.metadata.dst_node_id]
        saved = save_identity()
        try:
            set_client_identity(msg)
            return self.client_app(msg, context)
        except Exception as exc:  # noqa: BLE001 - a client failure must not end the run
            reason = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
            return error_reply(msg, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason)
        finally:
            restore_identity(saved)
