"""The serving layer's prediction log: writing it (an LZ4-compressed Arrow IPC stream per day and
process, one row per prediction: request id, time, pipeline, model version, slot and latency, then
the entity id, score, decision, event time, segment values as `segment.<name>` and input features
as `feature.<name>`; appended by a background thread off the request path) and reading it
(`read_requests`, `predictions`; `read_partition` ingests the predictions whose event time falls
in a partition, so live performance can join them with the labels when those land).

The log is Arrow: the writer spends little CPU and few bytes per request, and a partition is
ingested by vectorized filters. Batches are LZ4-compressed: zstd would compress smaller at several
times the CPU per record batch.

The background writer: a request hands its predictions to a bounded queue (`max_pending` requests;
when it is full the request waits, so nothing is dropped under load). The writer thread gathers
what arrives for up to `flush_seconds` (0.2 s) or `FLUSH_ROWS` rows and appends it as one record
batch, then flushes the file: a record batch has a fixed cost per column, which one-row requests
would otherwise pay one by one. `flush()` writes what is gathered at once; `close()` (called on the
service's shutdown and at interpreter exit, so on SIGTERM/SIGINT too) drains the queue and ends
the stream. A SIGKILL loses what is queued or gathered (normally the last `flush_seconds` of
predictions; under a backlog up to `max_pending` requests more), and at worst leaves a torn last
batch, which the reader skips. A file is never reopened for appending: a writer that finds its
file taken (a reused process id) starts the next segment (`<slot>-<pid>.1.arrows`), and so does a
writer after a failed write (the file may end in a partial batch) or for a request whose columns
or types its stream cannot hold (only columns that are all nulls are cast to the stream's types).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SUFFIX = ".arrows"  # the Arrow IPC stream format's registered extension
SEGMENT_PREFIX = "segment."
FEATURE_PREFIX = "feature."
FLUSH_SECONDS = 0.2
FLUSH_ROWS = 20_000

COLUMNS = [
    "request_id",
    "time",
    "model_version",
    "slot",
    "entity_id",
    "score",
    "decision",
    "event_time",
    "latency_ms",
]
REQUEST_FIELDS = ("request_id", "time", "pipeline", "model_version", "slot", "latency_ms")
PREDICTION_FIELDS = ("entity_id", "score", "decision", "event_time")


def log_path(folder: Path, pipeline: str, slot: str, when: datetime) -> Path:
    """Today's log file of this process: `<folder>/<pipeline>/<date>/<slot>-<pid>.arrows`."""
    return Path(folder) / pipeline / when.strftime("%Y-%m-%d") / f"{slot}-{os.getpid()}{SUFFIX}"


def log_files(folder: Path, slot: str | None = None) -> list[Path]:
    """Every log file under `folder`, optionally only one slot's, in writing order:
    by folder, then file, then segment (`blue-7.arrows` before `blue-7.1.arrows`)."""

    def order(path: Path) -> tuple[Path, str, int]:
        base, _, segment = path.stem.rpartition(".")
        return (path.parent, base, int(segment)) if segment.isdigit() else (path.parent, path.stem, 0)

    pattern = f"{slot}-*" if slot else "*"
    found = Path(folder).rglob(pattern)
    return sorted((p for p in found if p.suffix == SUFFIX and p.is_file()), key=order)


def _timestamp() -> pa.DataType:
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


def _array(values: Any, kind: pa.DataType | None = None) -> pa.Array:
    """One column as an Arrow array of `kind` (if given): from an Arrow array (the Arrow endpoint
    hands its columns over unconverted), a numpy array (masked entries become nulls) or a list."""
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        if np.ma.isMaskedArray(values):
            values = pa.array(np.ma.getdata(values), mask=np.ma.getmaskarray(values))
        else:
            values = pa.array(values, type=kind if isinstance(values, np.ndarray) else None)
    if kind is not None and values.type != kind:
        values = values.cast(kind)
    return values


def _joined(parts: list[Any], counts: list[int], kind: pa.DataType | None = None) -> pa.Array:
    """One per-prediction field of several requests as one array (lists are joined before Arrow
    sees them: an array per one-row request would cost more than its value)."""
    import pyarrow as pa

    if any(len(part) != count for part, count in zip(parts, counts, strict=True)):
        raise ValueError("prediction log: a request's fields have different lengths")
    if all(isinstance(part, list) for part in parts):
        return _array(list(itertools.chain.from_iterable(parts)) if len(parts) > 1 else parts[0], kind)
    arrays = [_array(part, kind) for part in parts]
    if kind is None:  # inferred types: a part that is all nulls takes the others' type
        typed = next((a.type for a in arrays if a.type != pa.null()), pa.null())
        arrays = [a if a.type == typed else a.cast(typed) for a in arrays]
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


def _feature_columns(rows: Any, names: list[str]) -> list[Any]:
    """The feature columns of a serving.FeatureRows (its Arrow table, or its lists), or of tuples."""
    if getattr(rows, "table", None) is not None:
        return [rows.table.column(name) for name in names]
    if hasattr(rows, "columns"):
        return [rows.column(name) for name in names]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def requests_table(batches: list[dict[str, Any]], pipeline: str, slot: str) -> pa.Table:
    """Scored requests as log rows, one per prediction, request after request in each request's
    order, each request's own fields repeated on its rows (see the module doc for the columns)."""
    import numpy as np
    import pyarrow as pa

    names, segments = list(batches[0]["feature_names"]), list(batches[0]["segments"])
    if any(list(b["feature_names"]) != names or list(b["segments"]) != segments for b in batches):
        raise ValueError("prediction log: requests written together must have the same features and segments")
    counts = [len(b["scores"]) for b in batches]
    total = sum(counts)
    owner = pa.array(np.repeat(np.arange(len(batches)), counts))

    def per_request(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind).take(owner)

    def per_prediction(key: str, kind: pa.DataType | None = None) -> pa.Array:
        return _joined([b[key] for b in batches], counts, kind)

    features = [_feature_columns(b["feature_rows"], names) for b in batches]
    columns = {
        "request_id": per_request([b["request_id"] for b in batches], pa.string()),
        "time": per_request([datetime.fromisoformat(b["time"]) for b in batches], _timestamp()),
        "pipeline": pa.repeat(pa.scalar(pipeline, pa.string()), total),
        "model_version": per_request([b["model_version"] for b in batches], pa.string()),
        "slot": pa.repeat(pa.scalar(slot, pa.string()), total),
        "latency_ms": per_request([b["latency_ms"] for b in batches], pa.float64()),
        "entity_id": per_prediction("entity_ids", pa.string()),
        "score": per_prediction("scores", pa.float64()),
        "decision": per_prediction("decisions", pa.bool_()),
        "event_time": per_prediction("event_times", _timestamp()),
        **{SEGMENT_PREFIX + n: _joined([b["segments"][n] for b in batches], counts) for n in segments},
        **{FEATURE_PREFIX + n: _joined([f[i] for f in features], counts) for i, n in enumerate(names)},
    }
    return pa.table(columns)


def write_now(folder: Path, pipeline: str, slot: str, batches: list[dict[str, Any]]) -> Path:
    """Write scored requests in the caller's thread, as a log file of their own (the next free
    segment of today's file of this process); returns its path."""
    table = requests_table(batches, pipeline, slot)
    path = log_path(folder, pipeline, slot, datetime.now(UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = _Stream(path, table.schema)
    stream.write(table)
    stream.close()
    return stream.path


def write_options() -> pa.ipc.IpcWriteOptions:
    """How log batches are encoded: LZ4 frames (see the module doc), compressed in the writer's own
    thread (Arrow's thread pool would cost more CPU than it saves for batches this size)."""
    import pyarrow as pa

    return pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


class _Stream:
    """One open log file and the Arrow stream writer appending to it."""

    def __init__(self, base: Path, schema: pa.Schema) -> None:
        import pyarrow as pa

        self.base, self.schema = base, schema
        while True:  # never append to a file another stream wrote (see the module doc)
            self.path = _free_segment(base)
            try:
                self.handle = self.path.open("xb")
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


def _fitted(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """`table` in an open stream's schema, if it differs only by columns that are all nulls (a
    one-row JSON request gives such a column no type); None otherwise. No other cast: one could
    change values (the text '007' as the integer 7)."""
    import pyarrow as pa

    if table.schema.names != schema.names:
        return None
    if any(t.type != s.type and t.type != pa.null() for t, s in zip(table.schema, schema, strict=True)):
        return None
    return table.cast(schema)


def _typed_nulls(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with each column that is all nulls given the type the same column had in `schema`,
    so that a new segment does not start with untyped columns again."""
    import pyarrow as pa

    known = {field.name: field.type for field in schema}
    fields = [
        field.with_type(known[field.name]) if field.type == pa.null() and field.name in known else field
        for field in table.schema
    ]
    return table.cast(pa.schema(fields))


def _row_count(item: dict[str, Any]) -> int:
    try:
        return len(item["scores"])
    except (KeyError, TypeError):  # malformed: written (and refused) by itself, counted as an error
        return 0


class PredictionLogWriter:
    """Appends scored requests to the prediction log from a background thread (see the module doc)."""

    def __init__(
        self,
        folder: Path,
        spec: PipelineSpec,
        slot: str,
        max_pending: int = 2048,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.slot = slot
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[dict[str, Any] | threading.Event | None] = queue.Queue(maxsize=max_pending)
        self._stream: _Stream | None = None
        self._closed = False
        self._lock = threading.Lock()  # orders submit/flush against close: nothing is queued after it
        self.errors = 0
        self.paths: list[Path] = []  # every file this writer started, in order
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def submit(self, batch: dict[str, Any]) -> None:
        """Queue one scored request (waits while the queue is full)."""
        with self._lock:
            if not self._closed:
                self._queue.put(batch)
                return
        write_now(self.folder, self.spec.name, self.slot, [batch])  # after close (interpreter exit)

    def flush(self, timeout: float = 60) -> bool:
        """Wait until everything submitted so far is written to the file; False if that took longer
        than `timeout` seconds."""
        written = threading.Event()
        with self._lock:
            if self._closed:
                return True
            self._queue.put(written)
        return written.wait(timeout)

    def close(self) -> None:
        """Write everything queued, then stop the thread and end the stream."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=60)
        if self._thread.is_alive():  # still writing (a stalled disk): leave its stream to it
            self.errors += 1
        else:
            self._end_stream()
        atexit.unregister(self.close)

    def _run(self) -> None:
        gathered: list[dict[str, Any]] = []
        rows, since = 0, 0.0
        while True:
            wait = None if not gathered else max(0.0, since + self.flush_seconds - time.monotonic())
            items: list[dict[str, Any] | threading.Event | None] = []
            try:
                item = self._queue.get(timeout=wait)
                while True:  # and what else is waiting, up to FLUSH_ROWS rows
                    items.append(item)
                    if isinstance(item, dict):
                        since = since if gathered else time.monotonic()
                        gathered.append(item)
                        rows += _row_count(item)
                    if item is None or rows >= FLUSH_ROWS:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            stop = None in items
            waiting = [item for item in items if isinstance(item, threading.Event)]
            due = time.monotonic() - since >= self.flush_seconds or rows >= FLUSH_ROWS
            try:
                if gathered and (stop or waiting or due):
                    pending, gathered, rows = gathered, [], 0
                    self._write_safely(pending)
            finally:
                for _ in items:
                    self._queue.task_done()
                for event in waiting:
                    event.set()
            if stop:
                return

    def _write_safely(self, batches: list[dict[str, Any]]) -> None:
        """Write, counting failures (a full disk must not kill the thread); requests that cannot be
        written together are written one by one, so one bad request loses only itself."""
        try:
            self._write(batches)
        except Exception:
            if len(batches) == 1:
                self.errors += 1
                return
            for batch in batches:
                self._write_safely([batch])

    def _end_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:  # the end-of-stream marker could not be written: readers do without it
                stream.abandon()
                self.errors += 1

    def _write(self, batches: list[dict[str, Any]]) -> None:
        table = requests_table(batches, self.spec.name, self.slot)
        path = log_path(self.folder, self.spec.name, self.slot, datetime.now(UTC))
        stream = self._stream
        if stream is not None and stream.base != path:
            self._end_stream()  # a new day: a new file
            stream = None
        if stream is not None and not table.schema.equals(stream.schema):
            fitted = _fitted(table, stream.schema)
            if fitted is None:  # a schema the stream cannot hold: the next segment
                table = _typed_nulls(table, stream.schema)
                self._end_stream()
                stream = None
            else:
                table = fitted
        if stream is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = self._stream = _Stream(path, table.schema)
            self.paths.append(stream.path)
        try:
            stream.write(table)
        except Exception:
            stream.abandon()  # its file may end in a partial batch: what follows goes to a new one
            self._stream = None
            raise


def read_table(path: Path) -> pa.Table | None:
    """An Arrow log file's rows; a torn last batch (a writer killed mid-write, or one still writing)
    is left out. None for a file that holds no complete schema yet."""
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except (StopIteration, pa.ArrowInvalid, OSError):  # the end, or a torn tail
            break
    return pa.Table.from_batches(batches, reader.schema)


def _time_texts(values: pa.Array, iso: bool) -> list[str | None]:
    """Timestamps as text: `datetime.isoformat()` for request times, `str()` for event times;
    formatted once per distinct value (they repeat within a request)."""
    encoded = values.dictionary_encode()
    texts = [
        None if t is None else (t.isoformat() if iso else str(t)) for t in encoded.dictionary.to_pylist()
    ]
    return [None if i is None else texts[i] for i in encoded.indices.to_pylist()]


def requests_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow log rows as requests: the request fields once, one list per per-prediction field, and
    `segments` and `features` as one list per name; a request's rows are consecutive."""
    if not table.num_rows:
        return []
    names = table.column_names
    plain = {name: table.column(name).to_pylist() for name in names if name not in ("time", "event_time")}
    plain["time"] = _time_texts(table.column("time").combine_chunks(), iso=True)
    plain["event_time"] = _time_texts(table.column("event_time").combine_chunks(), iso=False)
    ids, times = plain["request_id"], plain["time"]  # two requests may share an id, not a time too
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1] or times[i] != times[i - 1]]
    requests = []
    for start, end in zip(starts, [*starts[1:], len(ids)], strict=True):
        request: dict[str, Any] = {field: plain[field][start] for field in REQUEST_FIELDS}
        request.update({field: plain[field][start:end] for field in PREDICTION_FIELDS})
        request["segments"] = {
            n.removeprefix(SEGMENT_PREFIX): plain[n][start:end] for n in names if n.startswith(SEGMENT_PREFIX)
        }
        request["features"] = {
            n.removeprefix(FEATURE_PREFIX): plain[n][start:end] for n in names if n.startswith(FEATURE_PREFIX)
        }
        requests.append(request)
    return requests


def read_requests(
    path: Path, request_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """A log file's requests (the shape of `requests_from_table`): all, those with one request id,
    or those logged at or after `since` (ISO 8601 with a zone); a torn tail (a writer killed
    mid-write) is skipped. Only the rows asked for are turned into Python objects."""
    after = None if since is None else datetime.fromisoformat(since)
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(path)
    if table is None:
        return []
    if request_id is not None:
        table = table.filter(pc.equal(table.column("request_id"), request_id))
    if after is not None:
        table = table.filter(pc.greater_equal(table.column("time"), pa.scalar(after, _timestamp())))
    return requests_from_table(table)


def predictions(request: dict[str, Any]) -> list[dict[str, Any]]:
    """A logged request's predictions, one flat record each (request fields repeated)."""
    common = {f: request.get(f) for f in REQUEST_FIELDS}
    segments, features = request.get("segments") or {}, request.get("features") or {}
    return [
        {
            **common,
            **{f: request[f][i] for f in PREDICTION_FIELDS},
            "segments": {k: v[i] for k, v in segments.items()},
            "features": {k: v[i] for k, v in features.items()},
        }
        for i in range(len(request["entity_id"]))
    ]


def _partition_rows_arrow(path: Path, start: datetime, end: datetime) -> pd.DataFrame | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(path)
    if table is None or not table.num_rows:
        return None
    when = table.column("event_time")
    inside = pc.and_(
        pc.greater_equal(when, pa.scalar(start, _timestamp())), pc.less(when, pa.scalar(end, _timestamp()))
    )
    table = table.filter(pc.fill_null(inside, False)).select(COLUMNS)
    if not table.num_rows:
        return None
    frame = table.drop_columns(["time", "event_time"]).to_pandas()
    frame["time"] = _time_texts(table.column("time").combine_chunks(), iso=True)
    frame["event_time"] = _time_texts(table.column("event_time").combine_chunks(), iso=False)
    return frame[COLUMNS]


def read_partition(folder: Path, spec: PipelineSpec, partition_key: str) -> pd.DataFrame:
    """Every logged prediction of the pipeline whose event time is inside the partition (request
    and event times as text, as `requests_from_table` gives them): the ingesting step's way into
    the log."""
    import pandas as pd

    start, end = partition_window(spec.partitions, partition_key)
    frames = [pd.DataFrame(columns=COLUMNS)]
    for path in log_files(Path(folder) / spec.name):
        if (frame := _partition_rows_arrow(path, start, end)) is not None:
            frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    # explicit types: a partition with no predictions must not create the table with NULL columns
    numeric = {"score": "float64", "decision": "boolean", "latency_ms": "float64"}
    return frame.astype({**{c: "string" for c in COLUMNS if c not in numeric}, **numeric})
