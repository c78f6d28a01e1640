"""The Arrow request body: a table round-trips through an IPC stream (or file) and is then checked
as the JSON path checks it; bodies that are not Arrow IPC streams are refused; the client helper's
stream reads back with the JSON path's values."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.arrow_request import MEDIA_TYPE, encode_rows, read_stream
from ct_assets.lib.serving.request_rules import RequestError, RequestRules
from ct_assets_tests.lib.serving.arrow_vs_json import (
    by_arrow,
    by_json,
    many,
    table_of,
)


def stream_bytes(table: pa.Table, batch_rows: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return sink.getvalue().to_pybytes()


def test_round_trip_through_a_stream(rules: RequestRules) -> None:
    columns = many(300)
    table = table_of(rules, by_json(rules, columns, 300))
    body = stream_bytes(table, batch_rows=128)
    read = read_stream(body)
    assert read.column("carrier").num_chunks == 3
    assert by_arrow(rules, read, 300) == by_json(rules, columns, 300)
    sink = pa.BufferOutputStream()  # the IPC file format is read too
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert read_stream(sink.getvalue().to_pybytes()).equals(table)
    assert MEDIA_TYPE == "application/vnd.apache.arrow.stream"


def test_bodies_that_are_not_arrow_streams(rules: RequestRules) -> None:
    body = stream_bytes(pa.table(many(50)))
    bad_utf8 = pa.Array.from_buffers(
        pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32)), pa.py_buffer(b"\xff\xfe")]
    )
    for junk in [
        b"",
        b'{"columns": {"carrier": ["B6"]}}',
        b"ARROW1\x00\x00garbage",
        body[: len(body) // 2],
        bytes(range(256)) * 4,
        stream_bytes(pa.table({"carrier": bad_utf8})),
    ]:
        with pytest.raises(RequestError, match=r"not a valid Arrow IPC stream|body is empty"):
            read_stream(junk)


def test_encoded_rows_read_back_as_the_json_path_types_them(
    rules: RequestRules, flights_spec: PipelineSpec
) -> None:
    """The client helper's stream (JSON-style rows in) passes the check with the JSON path's values."""
    columns = many(50)
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    body = encode_rows(flights_spec, rows)
    assert by_arrow(rules, read_stream(body), 100) == by_json(rules, columns, 100)
