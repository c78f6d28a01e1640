"""The serving layer's prediction log: writing it (one JSON line per prediction, appended to a file
per day and process, by a background thread off the request path) and ingesting it (the
predictions whose event time falls in a partition, so live performance can join them with the
labels when those land).

Durability of the background writer: a request hands its predictions to a bounded queue
(`max_pending` requests; when it is full the request waits, so nothing is dropped under load); the
writer thread appends them and flushes the file after each drain. `close()` (called on the service's
shutdown and at interpreter exit, so on SIGTERM/SIGINT too) drains the queue before returning. A
SIGKILL loses the requests still in the queue (normally none or a few milliseconds' worth; at most
`max_pending`), and at worst leaves a torn last line, which the reader skips.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.partitions import partition_window
from ct_assets.lib.spec import PipelineSpec

if TYPE_CHECKING:
    import pandas as pd

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


def log_path(folder: Path, pipeline: str, slot: str, when: datetime) -> Path:
    """Today's log file of this process: `<folder>/<pipeline>/<date>/<slot>-<pid>.jsonl`."""
    return Path(folder) / pipeline / when.strftime("%Y-%m-%d") / f"{slot}-{os.getpid()}.jsonl"


_encode = json.JSONEncoder(check_circular=False, default=str).encode
_NUMBERS = (float, int, bool)


def _encoded_column(values: Any) -> list[str]:
    """Each value's JSON text, as `json.dumps` writes it, for a whole column at a time (a list, or
    a numpy array whose masked entries are nulls)."""
    if not isinstance(values, list):
        import numpy as np

        masked = np.flatnonzero(np.ma.getmaskarray(values)).tolist() if np.ma.isMaskedArray(values) else []
        kind = values.dtype.kind
        values = (values.data if np.ma.isMaskedArray(values) else values).tolist()
        for index in masked:
            values[index] = None
        if kind in "fiub":
            return json.dumps(values)[1:-1].split(", ") if values else []
    if not values:
        return []
    if all(v is None or type(v) in _NUMBERS for v in values):
        return json.dumps(values)[1:-1].split(", ")  # numbers and null never hold ", "
    if all(v is None or type(v) is str for v in values):
        quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
        return ["null" if v is None else quote(v) for v in values]
    return [_encode(v) for v in values]


def _columns_of(rows: Any, names: list[str]) -> list[Any]:
    """The feature columns: arrays or lists from a serving.FeatureRows, or lists from tuples."""
    if hasattr(rows, "columns"):
        return [rows.columns[name] for name in names]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def format_lines(
    batch: dict[str, Any], pipeline: str, slot: str, request_ids: list[str] | None = None
) -> str:
    """One request's predictions as JSON lines (request id, time, pipeline, model version, slot,
    entity id, score, decision, latency, event time, segments, features).

    Built a column at a time: each column's values are encoded in one go, then each line is one
    %-format of a template that holds the keys and the request's constant values."""
    count = len(batch["entity_ids"])
    if count == 0:
        return ""
    names = list(batch["feature_names"])
    segment_names = list(batch["segments"])

    def key(name: str) -> str:
        return _encode(name).replace("%", "%%")

    def constant(value: Any) -> str:
        return _encode(value).replace("%", "%%")

    template = (
        '{"request_id": %s, '
        f'"time": {constant(batch["time"])}, "pipeline": {constant(pipeline)}, '
        f'"model_version": {constant(batch["model_version"])}, "slot": {constant(slot)}, '
        '"entity_id": %s, "score": %s, "decision": %s, '
        f'"latency_ms": {constant(batch["latency_ms"])}, "event_time": %s, '
        '"segments": {' + ", ".join(f"{key(n)}: %s" for n in segment_names) + "}, "
        '"features": {' + ", ".join(f"{key(n)}: %s" for n in names) + "}}"
    )
    ids = request_ids if request_ids is not None else [batch["request_id"]] * count
    texts = {t: str(t) for t in set(batch["event_times"]) if t is not None}  # times repeat in a batch
    event_times = [texts[t] if t is not None else None for t in batch["event_times"]]
    columns = [
        ids,
        list(batch["entity_ids"]),
        [float(p) for p in batch["scores"]],
        [bool(d) for d in batch["decisions"]],
        event_times,
        *(list(batch["segments"][n]) for n in segment_names),
        *_columns_of(batch["feature_rows"], names),
    ]
    if any(len(column) != count for column in columns):
        raise ValueError("prediction log batch: columns of different lengths")
    encoded = [_encoded_column(column) for column in columns]
    return "\n".join(template % row for row in zip(*encoded, strict=True)) + "\n"


class PredictionLogWriter:
    """Appends scored requests to the prediction log from a background thread (see the module doc)."""

    def __init__(self, folder: Path, spec: PipelineSpec, slot: str, max_pending: int = 2048) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.slot = slot
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_pending)
        self._handles: dict[Path, Any] = {}
        self._closed = False
        self._lock = threading.Lock()
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def submit(self, batch: dict[str, Any]) -> None:
        """Queue one scored request (waits while the queue is full)."""
        if self._closed:
            self._write([batch])  # after close (interpreter exit): write it in the caller
            return
        self._queue.put(batch)

    def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Write everything queued, then stop the thread and close the files."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=60)
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:  # drain what else is waiting: one write and flush for all of it
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            try:
                self._write([b for b in batch if b is not None])
            except Exception:  # a full disk must not kill the thread: count it, keep serving
                self.errors += 1
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, batches: list[dict[str, Any]]) -> None:
        if not batches:
            return
        path = log_path(self.folder, self.spec.name, self.slot, datetime.now(UTC))
        handle = self._handles.get(path)
        if handle is None:
            for old in self._handles.values():
                old.close()
            self._handles.clear()
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._handles[path] = path.open("a")
        handle.write("".join(format_lines(b, self.spec.name, self.slot) for b in batches))
        handle.flush()


def _records(path: Path) -> list[dict[str, Any]]:
    """A log file's records; a torn last line (a writer killed mid-write) is skipped."""
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise
    return records


def read_partition(folder: Path, spec: PipelineSpec, partition_key: str) -> pd.DataFrame:
    """Every logged prediction of the pipeline whose event time is inside the partition."""
    import pandas as pd

    start, end = partition_window(spec.partitions, partition_key)
    records = []
    for path in sorted((Path(folder) / spec.name).rglob("*.jsonl")):
        for record in _records(path):
            when = record.get("event_time")
            if when and start <= datetime.fromisoformat(when) < end:
                records.append({column: record.get(column) for column in COLUMNS})
    frame = pd.DataFrame(records, columns=COLUMNS)
    # explicit types: a partition with no predictions must not create the table with NULL columns
    numeric = {"score": "float64", "decision": "boolean", "latency_ms": "float64"}
    return frame.astype({**{c: "string" for c in COLUMNS if c not in numeric}, **numeric})
