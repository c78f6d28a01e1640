"""Prediction log files as they are written: where a process writes today's log (`log_path`), how
its record batches are encoded (`write_options`), and one open file's Arrow stream (`LogStream`).

Batches are LZ4-compressed: zstd would compress smaller at several times the CPU per record batch.
A file is never reopened for appending: a stream that finds its file taken (a reused process id)
starts the next segment (`<slot>-<pid>.1.arrows`). A table joins an open stream only if its schema
differs by columns that are all nulls (`fitted`); otherwise it starts a new segment, with those
null columns typed as before (`typed_nulls`). `write_now` writes requests as a file of their own.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.serving.prediction_log_schema import SUFFIX, requests_table

if TYPE_CHECKING:
    import pyarrow as pa


def log_path(folder: Path, pipeline: str, slot: str, when: datetime) -> Path:
    """Today's log file of this process: `<folder>/<pipeline>/<date>/<slot>-<pid>.arrows`."""
    return Path(folder) / pipeline / when.strftime("%Y-%m-%d") / f"{slot}-{os.getpid()}{SUFFIX}"


def write_options() -> pa.ipc.IpcWriteOptions:
    """How log batches are encoded: LZ4 frames (see the module doc), compressed in the writer's own
    thread (Arrow's thread pool would cost more CPU than it saves for batches this size)."""
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


class LogStream:
    """One open log file and the Arrow stream writer appending to it."""

    def __init__(self, base: Path, schema: pa.Schema) -> None:
        import pyarrow as pa

        self.base, self.schema = base, schema
        while True:  # never append to a file another stream wrote (see the module doc)
            self.path = _free_segment(base)
            try:
                # Requests' inputs: readable by the service's user alone.
                self.handle = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
                break
            except FileExistsError:  # taken between the look and the open: the next one
                continue
        self.writer = pa.ipc.new_stream(self.handle, schema, options=write_options())

    def write(self, table: pa.Table) -> None:
        for batch in table.combine_chunks().to_batches():  # one record batch per write
            self.writer.write_batch(batch)
        self.handle.flush()

    def close(self) -> None:
        self.writer.close()
        self.handle.close()

    def abandon(self) -> None:
        """Close the file after a failed write, without an end-of-stream marker: it may end in a
        partial batch, which readers skip, so nothing more may follow it."""
        with contextlib.suppress(OSError):
            self.handle.close()


def _free_segment(path: Path) -> Path:
    """`path`, or its first segment name that no file has taken yet."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name.removesuffix(SUFFIX)}.{number}{SUFFIX}")
    return candidate


def fitted(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """`table` in an open stream's schema, if it differs only by columns that are all nulls (a
    one-row JSON request gives such a column no type); None otherwise. No other cast: one could
    change values (the text '007' as the integer 7)."""
    import pyarrow as pa

    if table.schema.names != schema.names:
        return None
    if any(t.type != s.type and t.type != pa.null() for t, s in zip(table.schema, schema, strict=True)):
        return None
    return table.cast(schema)


def typed_nulls(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with each column that is all nulls given the type the same column had in `schema`,
    so that a new segment does not start with untyped columns again."""
    import pyarrow as pa

    known = {field.name: field.type for field in schema}
    fields = [
        field.with_type(known[field.name]) if field.type == pa.null() and field.name in known else field
        for field in table.schema
    ]
    return table.cast(pa.schema(fields))


def write_now(folder: Path, pipeline: str, slot: str, batches: list[dict[str, Any]]) -> Path:
    """Write scored requests in the caller's thread, as a log file of their own (the next free
    segment of today's file of this process); returns its path."""
    table = requests_table(batches, pipeline, slot)
    path = log_path(folder, pipeline, slot, datetime.now(UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = LogStream(path, table.schema)
    stream.write(table)
    stream.close()
    return stream.path
