"""How many bytes an Arrow IPC body's buffers take once decompressed, read from its message headers
without decompressing anything.

Why: an IPC stream may compress its buffers (LZ4 or zstd), and Arrow allocates each buffer at the
size the sender declares before decompressing into it. A body within the HTTP limit (64 MiB) could
otherwise declare, and decompress to, tens of gigabytes and take a serving worker down with it.

How: each IPC message carries a Flatbuffers header. A record batch's header lists its buffers
(offset and length in the message body) and whether they are compressed; a compressed buffer begins
with its uncompressed length as a little-endian int64 (-1: stored as is). Dictionary batches hold a
record batch of their own. `pyarrow.ipc.MessageReader` splits the body into messages; this module
reads just those header fields (the Flatbuffers layout is Arrow's `Message.fbs`; pyarrow has no API
for them). A header it cannot make sense of is an `ArrowSizeError`; a body that is not an IPC
stream at all raises what pyarrow raises.

What it refuses (`ArrowSizeError`), because its count would not bound what Arrow allocates:
- metadata versions before V5 (V4 could mark compression in custom metadata, which is not read here);
- delta dictionaries (each delta makes a longer copy of the dictionary, so memory grows with the
  square of the deltas);
- more than `MAX_MESSAGES` messages or `MAX_BUFFERS` buffers in one batch (a request needs a few
  dozen; counting millions would hold the event loop for seconds).
A body in the IPC file format must be read in message order, as `decompressed_bytes` counts it,
never through its footer, which could point at batches the count did not see, or at one many times.
"""

from __future__ import annotations

import struct

import pyarrow as pa

FILE_MAGIC = b"ARROW1"

# Message.fbs: MessageHeader union values, and field slots of the tables read here.
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3
_MESSAGE_HEADER_TYPE, _MESSAGE_HEADER = 1, 2
_DICTIONARY_DATA = 1
_DICTIONARY_IS_DELTA = 2
_BATCH_BUFFERS, _BATCH_COMPRESSION = 2, 3
_BUFFER_STRUCT_BYTES = 16  # struct Buffer { offset: long; length: long; }
MAX_MESSAGES = 20_000
MAX_BUFFERS = 10_000


class ArrowSizeError(ValueError):
    """A message header that is not valid Flatbuffers as Arrow writes them."""


class _Table:
    """A Flatbuffers table inside `data` at `position`: its fields looked up through its vtable."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position
        self.vtable = position - _unpack("<i", data, position)
        self.vtable_bytes = _unpack("<H", data, self.vtable)

    def _field_position(self, slot: int) -> int | None:
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_bytes:
            return None
        offset = _unpack("<H", self.data, self.vtable + entry)
        return self.position + offset if offset else None

    def scalar(self, slot: int, fmt: str, default: int) -> int:
        where = self._field_position(slot)
        return default if where is None else _unpack(fmt, self.data, where)

    def target(self, slot: int) -> int | None:
        """Where an offset field (table or vector) points, or None when the field is absent."""
        where = self._field_position(slot)
        return None if where is None else where + _unpack("<I", self.data, where)

    def table(self, slot: int) -> _Table | None:
        where = self.target(slot)
        return None if where is None else _Table(self.data, where)


def _unpack(fmt: str, data: bytes | memoryview, position: int) -> int:
    if position < 0 or position + struct.calcsize(fmt) > len(data):
        raise ArrowSizeError(f"a message header points outside itself (byte {position} of {len(data)})")
    return struct.unpack_from(fmt, data, position)[0]


def _batch_bytes(batch: _Table, body: memoryview) -> int:
    """The bytes a record batch's buffers take once decompressed."""
    buffers = batch.target(_BATCH_BUFFERS)
    if buffers is None:
        return 0
    count = _unpack("<I", batch.data, buffers)
    if count > MAX_BUFFERS:
        raise ArrowSizeError(f"a record batch with {count:,} buffers (at most {MAX_BUFFERS:,} are accepted)")
    if buffers + 4 + count * _BUFFER_STRUCT_BYTES > len(batch.data):
        raise ArrowSizeError(f"a record batch header lists {count} buffers, more than it holds")
    compressed = batch.target(_BATCH_COMPRESSION) is not None
    total = 0
    for index in range(count):
        offset, length = struct.unpack_from("<qq", batch.data, buffers + 4 + index * _BUFFER_STRUCT_BYTES)
        if offset < 0 or length < 0 or offset + length > len(body):
            raise ArrowSizeError(f"buffer {index} of a record batch lies outside its message body")
        if not compressed or length < 8:
            total += length
            continue
        declared = _unpack("<q", body, offset)
        if declared < -1:
            raise ArrowSizeError(f"buffer {index} of a record batch declares a negative size")
        total += length - 8 if declared == -1 else declared
    return total


def message_bytes(message: pa.ipc.Message) -> int:
    """The bytes one IPC message's buffers take once decompressed (0 for a schema)."""
    if message.metadata_version != pa.ipc.MetadataVersion.V5:
        raise ArrowSizeError(
            "Arrow IPC metadata before version V5 is not accepted (pyarrow 1.0 and later write V5)"
        )
    header = bytes(message.metadata)
    body = memoryview(b"" if message.body is None else message.body)  # not copied
    root = _Table(header, _unpack("<I", header, 0))
    kind = root.scalar(_MESSAGE_HEADER_TYPE, "<B", 0)
    if kind not in (_DICTIONARY_BATCH, _RECORD_BATCH):
        return 0
    batch = root.table(_MESSAGE_HEADER)
    if batch is not None and kind == _DICTIONARY_BATCH:
        if batch.scalar(_DICTIONARY_IS_DELTA, "<?", False):
            raise ArrowSizeError("delta dictionary batches are not accepted: send each dictionary whole")
        batch = batch.table(_DICTIONARY_DATA)
    return 0 if batch is None else _batch_bytes(batch, body)


def stream_part(body: bytes) -> pa.Buffer:
    """The IPC stream in a body: all of a stream body; in a file body, the stream that follows its
    magic and padding (it ends where the footer begins; the footer is never read)."""
    return pa.py_buffer(body)[8:] if body[:6] == FILE_MAGIC else pa.py_buffer(body)


def decompressed_bytes(body: bytes) -> int:
    """The bytes all buffers of an Arrow IPC stream (or file) body take once decompressed."""
    reader = pa.ipc.MessageReader.open_stream(stream_part(body))
    total = 0
    for _ in range(MAX_MESSAGES + 1):
        try:
            message = reader.read_next_message()
        except StopIteration:
            return total
        total += message_bytes(message)
    raise ArrowSizeError(f"more than {MAX_MESSAGES:,} messages in one body")
