"""The decompressed size of an Arrow IPC body, read from its message headers: it must match what
Arrow allocates, for every compression, both IPC formats and dictionary batches, and a body that
would decompress past the limit must be refused before anything is decompressed."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from ct_assets.lib.serving.arrow_request import BodyTooLarge, read_stream
from ct_assets.lib.serving.arrow_size import decompressed_bytes
from ct_assets.lib.serving.request_rules import RequestError


def _encode(table: pa.Table, compression: str | None = None, file: bool = False) -> bytes:
    sink = pa.BufferOutputStream()
    new = pa.ipc.new_file if file else pa.ipc.new_stream
    with new(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        writer.write_table(table, max_chunksize=7)  # several record batches
    return sink.getvalue().to_pybytes()


def _table() -> pa.Table:
    return pa.table(
        {
            "origin": pa.array(["EWR", None, "JFK" * 1000] * 10),
            "carrier": pa.array(["UA", "B6", "AA"] * 10).dictionary_encode(),
            "distance": pa.array([1.5, None, 3.0] * 10),
            "flight": pa.array(range(30)),
        }
    )


def _allocated(body: bytes) -> int:
    """What Arrow's reader holds for the body's buffers (each buffer padded to 8 bytes)."""
    reader = pa.ipc.open_stream(body[8:] if body[:6] == b"ARROW1" else body)
    batches = list(reader)
    dictionaries = [batches[0].column("carrier").dictionary] if batches else []
    buffers = [b for batch in batches for column in batch.columns for b in column.buffers() if b is not None]
    buffers += [b for array in dictionaries for b in array.buffers() if b is not None]
    return sum(b.size for b in buffers)


@pytest.mark.parametrize("compression", [None, "lz4", "zstd"])
@pytest.mark.parametrize("file", [False, True])
def test_declared_size_is_what_arrow_allocates(compression: str | None, file: bool) -> None:
    body = _encode(_table(), compression, file)
    declared = decompressed_bytes(body)
    allocated = _allocated(body)
    # The dictionary's own buffers are counted in every batch that shares it, by `_allocated`.
    assert declared > 30 * 1000 and abs(declared - allocated) <= 8 * 40, (declared, allocated)
    if compression:
        assert len(body) < declared / 5


def test_a_compression_bomb_is_refused_before_it_is_decompressed() -> None:
    bomb = _encode(pa.table({"origin": pa.array(["A" * 1_000_000] * 100)}), "zstd")
    assert len(bomb) < 100_000  # 100 MB of text in a body far under the limit
    before = pa.total_allocated_bytes()
    refusal = r"take 100,000,[0-9,]+ bytes once decompressed, larger than the limit of 64,000,000"
    with pytest.raises(BodyTooLarge, match=refusal):
        read_stream(bomb, max_bytes=64_000_000)
    assert pa.total_allocated_bytes() - before < 1_000_000
    assert read_stream(bomb, max_bytes=200_000_000).num_rows == 100  # the same body, under a higher limit


def test_mangled_headers_are_request_errors() -> None:
    body = _encode(_table(), "zstd")
    chaos = random.Random(3)
    outcomes = {"refused": 0, "read": 0}
    for _ in range(500):
        mangled = bytearray(body)
        for _ in range(chaos.randint(1, 6)):
            mangled[chaos.randrange(min(len(mangled), 2_000))] = chaos.randrange(256)
        try:
            read_stream(bytes(mangled), max_bytes=10_000_000)
        except RequestError:
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert outcomes["refused"] > 100, outcomes


def test_a_file_body_is_read_in_message_order_never_through_its_footer() -> None:
    """The size is counted over the messages in order; a footer could point elsewhere (at a batch
    after the end-of-stream marker, or at one batch many times), so it is never read."""
    table = _table()
    body = bytearray(_encode(table, "lz4", file=True))
    body[-16:] = bytes(16)  # the footer's tail, its length and the closing magic: gone
    assert read_stream(bytes(body)).equals(table)


def _stream_with(options: pa.ipc.IpcWriteOptions, batches: list[pa.RecordBatch]) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batches[0].schema, options=options) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def test_bodies_whose_size_cannot_be_bounded_are_refused() -> None:
    batch = pa.record_batch({"origin": pa.array(["EWR"])})
    old = pa.ipc.IpcWriteOptions(metadata_version=pa.ipc.MetadataVersion.V4)
    with pytest.raises(RequestError, match="metadata before version V5"):
        read_stream(_stream_with(old, [batch]))

    growing = [
        pa.record_batch(
            {
                "origin": pa.DictionaryArray.from_arrays(
                    pa.array([i]), pa.array([f"v{j}" for j in range(i + 1)])
                )
            }
        )
        for i in range(3)
    ]
    deltas = pa.ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    with pytest.raises(RequestError, match="delta dictionary"):
        read_stream(_stream_with(deltas, growing))
    assert read_stream(_stream_with(pa.ipc.IpcWriteOptions(), growing)).num_rows == 3  # whole ones are fine

    empty = pa.record_batch({"origin": pa.array([], pa.string())})
    with pytest.raises(RequestError, match="more than 20,000 messages"):
        read_stream(_stream_with(pa.ipc.IpcWriteOptions(), [empty] * 20_001))
    wide = pa.record_batch({f"c{i}": pa.array([i]) for i in range(5_001)})  # 10,002 buffers
    with pytest.raises(RequestError, match="10,002 buffers"):
        read_stream(_stream_with(pa.ipc.IpcWriteOptions(), [wide]))
