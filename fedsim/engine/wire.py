"""Serialized size of a message as Flower ships it, for the virtual clock.

Flower's wire unit is the set of deflated inflatable objects of a message (Message, RecordDict,
records, Arrays, ArrayChunks), each stored once per message (reference/flower-1.41.md §9). This
counts exactly what ``fedsim.comm``'s meter counts; deflating leaves memoryview chunks cached in
every ``Array`` (which Ray would ship a second time), so they are dropped afterwards.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def drop_record_chunks(record: object) -> None:
    """Forget the chunk views ``deflate()``/``object_id`` cache in the Arrays of a record."""
    if isinstance(record, ArrayRecord):
        for value in record.values():
            value.__dict__.pop("_chunks", None)


def drop_chunk_cache(content: RecordDict) -> None:
    """:func:`drop_record_chunks` for every record of ``content``."""
    for record in content.values():
        drop_record_chunks(record)


def content_bytes(content: RecordDict) -> tuple[int, set[str]]:
    """Deflated bytes of a RecordDict's object tree and the object ids it holds."""
    objects = get_all_nested_objects(content)
    total = sum(len(obj.deflate()) for obj in objects.values())
    drop_chunk_cache(content)
    return total, set(objects)


def message_bytes(msg: Message, content_size: int | None = None) -> int:
    """Deflated bytes of ``msg`` (its content's size may be given, computed once per content)."""
    if msg.has_error():
        return len(msg.deflate())
    if content_size is None:
        content_size, _ = content_bytes(msg.content)
    return content_size + len(msg.deflate())
