"""Exact serialized size of a Flower message, without hashing or copying its arrays.

Flower ships a message as the set of its deflated inflatable objects (Message, RecordDict,
records, Arrays, ArrayChunks), each distinct object once
(docs/design-notes.md#message-size-on-the-wire). Its own
way to count them, ``sum(len(o.deflate()) for o in get_all_nested_objects(msg).values())``,
copies and SHA-256-hashes every chunk several times over and costs about 0.7 ms per 150 KB
model reply, almost all of it Python overhead.

Yet a deflated object is ``"<type> <child ids> <body length>" + b"\\0" + body`` and every child
id is 64 hex characters, so the length of each object depends only on its own fields, the
*number* of its distinct children, and, for an ArrayChunk, the length of its data. The only
content-dependent part is which objects are identical (Flower counts those once): two objects
are identical exactly when their type and deflated content are, which is decided here by
comparing the data bytes of equal-length chunks instead of hashing them. :func:`tree_bytes`
therefore gives Flower's count, to the byte (``tests/comm/test_tree_size.py`` checks it against
Flower's own on many messages); objects of unknown types and arrays larger than one chunk are
measured by Flower's own code. Either way the memoryview chunks that deflating caches in each
``Array`` (here or earlier) are dropped, so measured messages stay picklable and Ray does not
ship their data twice (docs/design-notes.md#cached-chunks-after-deflating).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
from flwr.common.serde_utils import error_to_proto, metadata_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage  # pylint: disable=E0611
from flwr.supercore.constant import HEAD_BODY_DIVIDER, HEAD_VALUE_DIVIDER
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

ID_CHARS = 64  # an object id is a SHA-256 hex digest
_PLACEHOLDER_ID = "0" * ID_CHARS
_ARRAY_FRAMES: dict[tuple, int] = {}  # (dtype, shape, stype) -> deflated length of the Array


def framed(type_name: str, distinct_children: int, body_length: int) -> int:
    """Length of ``add_header_to_object_body``'s output for such an object."""
    ids = distinct_children * (ID_CHARS + 1) - 1 if distinct_children else 0
    header = len(type_name) + 2 * len(HEAD_VALUE_DIVIDER) + ids + len(str(body_length))
    return header + len(HEAD_BODY_DIVIDER) + body_length


def _array_frame(array: Array) -> int:
    """Deflated length of a one-chunk Array (its body: dtype, shape, stype, chunk index)."""
    key = (array.dtype, tuple(array.shape), array.stype)
    if key not in _ARRAY_FRAMES:
        body = json.dumps({"dtype": array.dtype, "shape": array.shape, "stype": array.stype,
                           "arraychunk_ids": [0]}).encode("utf-8")
        _ARRAY_FRAMES[key] = framed("Array", 1, len(body))
    return _ARRAY_FRAMES[key]


@functools.lru_cache(maxsize=1024)
def _refs_body(names: tuple[str, ...]) -> int:
    """Length of the ``{name: object id}`` JSON body of an ArrayRecord or RecordDict."""
    return len(json.dumps(dict.fromkeys(names, _PLACEHOLDER_ID)).encode("utf-8"))


class _Tree:
    """The distinct objects of one message tree, identified by content, with their sizes."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: set[Any] = set()
        self._chunks: dict[int, list[bytes]] = {}  # data length -> distinct chunk data

    def _add(self, key: Any, size: int) -> Any:
        if key not in self._seen:
            self._seen.add(key)
            self.total += size
        return key

    def _chunk(self, data: bytes) -> Any:
        same_length = self._chunks.setdefault(len(data), [])
        for index, other in enumerate(same_length):
            if other is data or other == data:
                return ("ArrayChunk", len(data), index)
        same_length.append(data)
        return self._add(("ArrayChunk", len(data), len(same_length) - 1),
                         framed("ArrayChunk", 0, len(data)))

    def _array(self, array: Array) -> Any:
        array.__dict__.pop("_chunks", None)  # views left by earlier deflates: keep it picklable
        data = array.data
        if not 0 < len(data) <= FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE:
            raise _Unsupported
        key = ("Array", array.dtype, tuple(array.shape), array.stype, self._chunk(data))
        return self._add(key, _array_frame(array))

    def record(self, record: Any) -> Any:
        if isinstance(record, ArrayRecord):
            names = tuple(record.keys())
            children = tuple(self._array(a) for a in record.values())
            size = framed("ArrayRecord", len(set(children)), _refs_body(names))
            return self._add(("ArrayRecord", names, children), size)
        if isinstance(record, (ConfigRecord, MetricRecord)):
            body = record.deflate()
            return self._add((type(record).__name__, body), len(body))
        raise _Unsupported

    def content(self, content: RecordDict) -> Any:
        names = tuple(content.keys())
        children = tuple(self.record(r) for r in content.values())
        size = framed("RecordDict", len(set(children)), _refs_body(names))
        return self._add(("RecordDict", names, children), size)


class _Unsupported(Exception):
    """An object this module does not size itself (Flower's own count is used)."""


def _flower_count(obj: Any) -> int:
    """Flower's own count; drops the chunk views it leaves in the Arrays (they break pickling
    and would double Ray payloads; docs/design-notes.md#cached-chunks-after-deflating)."""
    objects = get_all_nested_objects(obj).values()
    total = sum(len(o.deflate()) for o in objects)
    for o in objects:
        if isinstance(o, Array):
            o.__dict__.pop("_chunks", None)
    return total


def message_frame(msg: Message) -> int:
    """Deflated length of the Message object itself (metadata and error, not its content)."""
    proto_metadata = metadata_to_proto(msg.metadata)
    proto_metadata.message_id = ""
    body = ProtoMessage(metadata=proto_metadata, content=None,
                        error=error_to_proto(msg.error) if msg.has_error() else None
                        ).SerializeToString(deterministic=True)
    return framed("Message", 1 if msg.has_content() else 0, len(body))


def content_tree_bytes(content: RecordDict) -> int:
    """Σ deflated bytes of the distinct objects of a RecordDict's tree (Flower's count)."""
    tree = _Tree()
    try:
        tree.content(content)
    except _Unsupported:
        return _flower_count(content)
    return tree.total


def tree_bytes(msg: Message) -> int:
    """Σ ``len(o.deflate())`` over ``get_all_nested_objects(msg)``, computed without hashing."""
    if not msg.has_content():
        return message_frame(msg)
    return content_tree_bytes(msg.content) + message_frame(msg)
