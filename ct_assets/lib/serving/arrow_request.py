"""Columnar prediction requests: an Apache Arrow IPC stream, one column per request field.

`read_stream` turns the body into a table (any non-Arrow body is a `RequestError`, a body too large
once decompressed a `BodyTooLarge`); `to_stream` writes a table as such a body (the Arrow answer
too), and `encode_rows` builds a request body from JSON-style rows on the client side. The table is
checked and typed by `arrow_request_check.check_table`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.arrow_column_types import ARROW_TYPES
from ct_assets.lib.serving.arrow_size import decompressed_bytes, stream_part
from ct_assets.lib.serving.body_limit import max_body_bytes
from ct_assets.lib.serving.request_rules import RequestError

MEDIA_TYPE = "application/vnd.apache.arrow.stream"


class BodyTooLarge(RequestError):
    """A body whose compressed buffers would take more memory than the body limit allows."""


def to_stream(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes (what the endpoint reads, and what it answers)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def encode_rows(spec: PipelineSpec, rows: list[dict[str, Any]]) -> bytes:
    """Client side: JSON-style request rows (as /predict takes them) as the Arrow IPC stream
    /predict_arrow takes, one column per request field in the spec's Arrow type (ISO timestamps
    parsed, no zone meaning UTC; fields missing from a row are null)."""

    def timestamp(value: str | None) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    parse = {"timestamp": timestamp, "date": lambda v: None if v is None else date.fromisoformat(v[:10])}
    fields, data = [], {}
    for name, column in spec.columns.items():
        if name in spec.post_event_columns:
            continue
        values = [row.get(name) for row in rows]
        if column.type in parse:
            values = [parse[column.type](v) for v in values]
        fields.append(pa.field(name, ARROW_TYPES[column.type]))
        data[name] = values
    return to_stream(pa.Table.from_pydict(data, schema=pa.schema(fields)))


def read_stream(body: bytes, max_bytes: int | None = None) -> pa.Table:
    """The table in an Arrow IPC stream body (the IPC file format is accepted too), fully validated
    so that malformed offsets or UTF-8 are refused here rather than met by a compute kernel. A body
    whose buffers take more than `max_bytes` (default: the body limit, CT_MAX_BODY_BYTES) once
    decompressed is refused before anything is decompressed (`arrow_size`)."""
    if not body:
        raise RequestError(f"the body is empty: expected an Arrow IPC stream ({MEDIA_TYPE})")
    limit = max_body_bytes() if max_bytes is None else max_bytes
    try:  # any failure to read the body is the caller's error, never a 500
        size = decompressed_bytes(body)
        if size <= limit:  # a file body is read in message order too, as counted, never via its footer
            table = pa.ipc.open_stream(stream_part(body)).read_all()
            table.validate(full=True)
    except Exception as err:
        hint = " (it looks like JSON)" if bytes(body[:1]) in (b"{", b"[") else ""
        reason = str(err)[:200]  # a reader's message may quote the body
        raise RequestError(f"the body is not a valid Arrow IPC stream{hint}: {reason}") from None
    if size > limit:
        raise BodyTooLarge(
            f"the Arrow body's buffers take {size:,} bytes once decompressed, larger than the limit of "
            f"{limit:,} bytes (CT_MAX_BODY_BYTES)"
        )
    return table
