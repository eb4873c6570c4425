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


class ReplySizer:
    """:func:`message_bytes` at a fraction of the cost, for a stream of similar messages
    (replies in the actors, instructions in the driver).

    Deflating a reply hashes and copies every chunk (about 1 ms for a 150 KB model). An
    ArrayRecord's serialized size depends only on its keys, dtypes, shapes and byte lengths
    (object ids have a fixed length), so it is measured exactly once per such signature and
    reused; Config and Metric records are deflated every time (they are small), and the
    Message/RecordDict frame is measured once per message type and record layout. Differences
    from the exact count: duplicate arrays inside one record (Flower stores them once) and the
    few bytes of float fields in the metadata.
    """

    def __init__(self) -> None:
        self._records: dict[tuple, int] = {}
        self._frames: dict[tuple, int] = {}

    def record_bytes(self, record: object) -> int:
        if not isinstance(record, ArrayRecord):
            return len(record.deflate())  # type: ignore[attr-defined]
        sig = tuple((k, a.dtype, tuple(a.shape), a.stype, len(a.data)) for k, a in record.items())
        if sig not in self._records:
            objects = get_all_nested_objects(record)
            self._records[sig] = sum(len(obj.deflate()) for obj in objects.values())
            drop_record_chunks(record)
        return self._records[sig]

    def __call__(self, msg: Message) -> int:
        if msg.has_error():
            return len(msg.deflate())
        parts = sum(self.record_bytes(r) for r in msg.content.values())
        sig = (msg.metadata.message_type,
               tuple((k, type(r).__name__) for k, r in msg.content.items()))
        if sig not in self._frames:
            self._frames[sig] = message_bytes(msg) - parts
            drop_chunk_cache(msg.content)
        return parts + self._frames[sig]
