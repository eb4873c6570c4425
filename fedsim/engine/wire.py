"""Serialized size of a message as Flower ships it, for the virtual clock.

Flower's wire unit is the set of deflated inflatable objects of a message (Message, RecordDict,
records, Arrays, ArrayChunks), each stored once per message
(docs/design-notes.md#message-size-on-the-wire). This
counts exactly what ``fedsim.comm``'s meter counts, with the same exact and cheap arithmetic
(``fedsim.comm.tree_size``: no hashing, no copies). Code that did make Flower deflate a record
(``object_id``, ``deflate()``) leaves memoryview chunks cached in its Arrays, which Ray would
ship a second time; :func:`drop_record_chunks` removes them.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Message, RecordDict

from fedsim.comm.tree_size import content_tree_bytes, message_frame


def drop_record_chunks(record: object) -> None:
    """Forget the chunk views ``deflate()``/``object_id`` cache in the Arrays of a record."""
    if isinstance(record, ArrayRecord):
        for value in record.values():
            value.__dict__.pop("_chunks", None)


def drop_chunk_cache(content: RecordDict) -> None:
    """:func:`drop_record_chunks` for every record of ``content``."""
    for record in content.values():
        drop_record_chunks(record)


def message_bytes(msg: Message, content_size: int | None = None) -> int:
    """Deflated bytes of ``msg``; its content's size may be given (computed once per content
    object shared by several messages, see :func:`content_tree_bytes`)."""
    if not msg.has_content():
        return message_frame(msg)
    if content_size is None:
        content_size = content_tree_bytes(msg.content)
    return content_size + message_frame(msg)
