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


def format_lines(
    batch: dict[str, Any], pipeline: str, slot: str, request_ids: list[str] | None = None
) -> str:
    """One request's predictions as JSON lines (request id, time, pipeline, model version, slot,
    entity id, score, decision, latency, event time, segments, features)."""
    names = batch["feature_names"]
    rows = batch["feature_rows"]
    rows = rows.rows if hasattr(rows, "rows") else rows  # serving.FeatureRows: tuples made here
    segment_names = list(batch["segments"])
    count = len(batch["entity_ids"])
    segments = list(zip(*batch["segments"].values(), strict=True)) or [()] * count
    common = ", ".join(
        f"{_encode(key)}: {_encode(value)}"
        for key, value in (
            ("time", batch["time"]),
            ("pipeline", pipeline),
            ("model_version", batch["model_version"]),
            ("slot", slot),
        )
    )
    out = []
    for index, (entity, score, decision, event_time, row, segment) in enumerate(
        zip(
            batch["entity_ids"],
            batch["scores"],
            batch["decisions"],
            batch["event_times"],
            rows,
            segments,
            strict=True,
        )
    ):
        request_id = request_ids[index] if request_ids is not None else batch["request_id"]
        rest = _encode(
            {
                "entity_id": entity,
                "score": score,
                "decision": decision,
                "latency_ms": batch["latency_ms"],
                "event_time": str(event_time) if event_time is not None else None,
                "segments": dict(zip(segment_names, segment, strict=True)),
                "features": dict(zip(names, row, strict=True)),
            }
        )
        out.append(f'{{"request_id": {_encode(request_id)}, {common}, {rest[1:]}')
    return "\n".join(out) + "\n" if out else ""


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
    return frame.astype({"score": "float64", "decision": "boolean", "latency_ms": "float64"})
