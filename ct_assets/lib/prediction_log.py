"""The serving layer's prediction log: writing it (one JSON line per request, holding each of its
predictions: request id, time, pipeline, model version, slot, latency, then per prediction the
entity id, score, decision, event time, segment values and input features; appended to a file per
day and process by a background thread off the request path, encoded by orjson) and reading it
(`read_requests`, `predictions`; ingesting the predictions whose event time falls in a partition,
so live performance can join them with the labels when those land).

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


def _json_values(values: Any) -> Any:
    """One per-prediction field as orjson writes it fastest: numbers as a numpy array (C speed;
    NaN and nulls both written as null), anything else as a list (None for nulls). Takes a list, a
    numpy array (masked entries are nulls) or an Arrow array (the Arrow endpoint hands its columns
    over unconverted, so converting them happens here, in the writer thread)."""
    import numpy as np

    if isinstance(values, list):
        return values
    if hasattr(values, "to_pylist"):
        import pyarrow as pa
        import pyarrow.compute as pc

        array = values.combine_chunks() if hasattr(values, "combine_chunks") else values
        kind = array.type
        if kind == pa.float64():  # nulls become NaN in the copy (written as null all the same)
            return array.to_numpy(zero_copy_only=False)
        if pa.types.is_floating(kind):
            return pc.fill_null(array.cast(pa.float64()), np.nan).to_numpy()
        if (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) and not array.null_count:
            return array.to_numpy()
        if pa.types.is_timestamp(kind):
            return _time_texts(array)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return array.to_numpy(zero_copy_only=False).tolist()
        return array.to_pylist()
    if np.ma.isMaskedArray(values):
        plain = values.data.tolist()
        for index in np.flatnonzero(np.ma.getmaskarray(values)).tolist():
            plain[index] = None
        return plain
    return values if values.dtype.kind in "fiub" else values.tolist()


def _time_texts(values: Any) -> list[str | None]:
    """Event times as `str(datetime)` writes a UTC datetime ('2013-01-09 04:59:00+00:00'): from
    datetimes or text, or from an Arrow timestamp array without a Python datetime per value."""
    if hasattr(values, "to_pylist"):
        import pyarrow as pa
        import pyarrow.compute as pc

        try:  # whole seconds (the usual case): formatted by numpy, five times faster than strftime
            seconds = values.cast(pa.timestamp("s", tz="UTC"))
        except pa.ArrowInvalid:
            values = values.to_pylist()
        else:
            import numpy as np

            raw = pc.fill_null(seconds.cast(pa.int64()), 0).to_numpy().astype("datetime64[s]")
            texts: list[str | None] = [
                text.replace("T", " ") + "+00:00" for text in np.datetime_as_string(raw).tolist()
            ]
            if seconds.null_count:
                for index in np.flatnonzero(seconds.is_null().to_numpy(zero_copy_only=False)).tolist():
                    texts[index] = None
            return texts
    texts = {t: str(t) for t in set(values) if t is not None}  # times repeat in a batch
    return [texts[t] if t is not None else None for t in values]


def _feature_columns(rows: Any, names: list[str]) -> list[Any]:
    """The feature columns of a serving.FeatureRows (its Arrow table, or its lists), or of tuples."""
    if getattr(rows, "table", None) is not None:
        return [rows.table.column(name) for name in names]
    if hasattr(rows, "columns"):
        return [rows.column(name) for name in names]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def encode_request(batch: dict[str, Any], pipeline: str, slot: str) -> bytes:
    """One request's predictions as one JSON line: the request's own fields once (request id, time,
    pipeline, model version, slot, latency), then one array per per-prediction field (entity id,
    score, decision, event time, each segment, each feature), all in the request's row order."""
    import numpy as np
    import orjson

    names = list(batch["feature_names"])
    count = len(batch["scores"])
    columns = _feature_columns(batch["feature_rows"], names)
    record = {
        "request_id": batch["request_id"],
        "time": batch["time"],
        "pipeline": pipeline,
        "model_version": batch["model_version"],
        "slot": slot,
        "latency_ms": batch["latency_ms"],
        "entity_id": [str(i) for i in _plain(batch["entity_ids"])],
        "score": np.asarray(batch["scores"], dtype=np.float64),
        "decision": np.asarray(batch["decisions"], dtype=np.bool_),
        "event_time": _time_texts(batch["event_times"]),
        "segments": {name: _json_values(values) for name, values in batch["segments"].items()},
        "features": {name: _json_values(values) for name, values in zip(names, columns, strict=True)},
    }
    fields = [record["entity_id"], record["event_time"], *record["segments"].values()]
    if any(len(values) != count for values in [*fields, *record["features"].values()]):
        raise ValueError("prediction log: a request's fields have different lengths")
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE, default=str)


def _plain(values: Any) -> list[Any]:
    values = _json_values(values)
    return values if isinstance(values, list) else values.tolist()


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
            handle = self._handles[path] = path.open("ab")
        handle.write(b"".join(encode_request(b, self.spec.name, self.slot) for b in batches))
        handle.flush()


REQUEST_FIELDS = ("request_id", "time", "pipeline", "model_version", "slot", "latency_ms")
PREDICTION_FIELDS = ("entity_id", "score", "decision", "event_time")


def request_from_line(line: str | bytes) -> dict[str, Any]:
    """One log line as a request with one list per per-prediction field (see `encode_request`); a
    line written one per prediction (by earlier versions) reads as a one-row request. Raises
    json.JSONDecodeError for a torn line."""
    record = json.loads(line)
    if isinstance(record.get("entity_id"), list):
        return record
    return {
        **{f: record.get(f) for f in REQUEST_FIELDS},
        **{f: [record.get(f)] for f in PREDICTION_FIELDS},
        "segments": {k: [v] for k, v in (record.get("segments") or {}).items()},
        "features": {k: [v] for k, v in (record.get("features") or {}).items()},
    }


def read_requests(path: Path) -> list[dict[str, Any]]:
    """A log file's requests (`request_from_line`); a torn last line (a writer killed mid-line) is
    skipped."""
    lines = Path(path).read_bytes().splitlines()
    requests = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            requests.append(request_from_line(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise
    return requests


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


def read_partition(folder: Path, spec: PipelineSpec, partition_key: str) -> pd.DataFrame:
    """Every logged prediction of the pipeline whose event time is inside the partition."""
    import pandas as pd

    start, end = partition_window(spec.partitions, partition_key)
    records = []
    for path in sorted((Path(folder) / spec.name).rglob("*.jsonl")):
        for request in read_requests(path):
            common = {f: request.get(f) for f in REQUEST_FIELDS if f in COLUMNS}
            parsed: dict[str, datetime] = {}  # event times repeat within a request
            for index, when in enumerate(request["event_time"]):
                if not when:
                    continue
                moment = parsed.get(when) or parsed.setdefault(when, datetime.fromisoformat(when))
                if start <= moment < end:
                    records.append({**common, **{f: request[f][index] for f in PREDICTION_FIELDS}})
    frame = pd.DataFrame(records, columns=COLUMNS)
    # explicit types: a partition with no predictions must not create the table with NULL columns
    numeric = {"score": "float64", "decision": "boolean", "latency_ms": "float64"}
    return frame.astype({**{c: "string" for c in COLUMNS if c not in numeric}, **numeric})
