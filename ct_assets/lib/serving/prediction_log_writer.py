"""The prediction log's background writer: `PredictionLogWriter` appends scored requests to the log
(an LZ4-compressed Arrow IPC stream per day and process, `prediction_log_stream`) from a thread of
its own, off the request path.

A request hands its predictions to a bounded queue (`max_pending` requests; when it is full the
request waits, so nothing is dropped under load). The writer thread gathers what arrives for up to
`flush_seconds` (0.2 s) or `FLUSH_ROWS` rows and appends it as one record batch, then flushes the
file: a record batch has a fixed cost per column, which one-row requests would otherwise pay one by
one. `flush()` writes what is gathered at once; `close()` (called on the service's shutdown and at
interpreter exit, so on SIGTERM/SIGINT too) drains the queue and ends the stream. A SIGKILL loses
what is queued or gathered (normally the last `flush_seconds` of predictions; under a backlog up to
`max_pending` requests more), and at worst leaves a torn last batch, which the reader skips. The
writer starts the next segment after a failed write (the file may end in a partial batch) and for a
request whose columns or types its stream cannot hold (only columns that are all nulls are cast to
the stream's types).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.prediction_log_schema import requests_table
from ct_assets.lib.serving.prediction_log_stream import LogStream, fitted, log_path, typed_nulls, write_now

FLUSH_SECONDS = 0.2
FLUSH_ROWS = 20_000


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
        self._stream: LogStream | None = None
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
            fitting = fitted(table, stream.schema)
            if fitting is None:  # a schema the stream cannot hold: the next segment
                table = typed_nulls(table, stream.schema)
                self._end_stream()
                stream = None
            else:
                table = fitting
        if stream is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = self._stream = LogStream(path, table.schema)
            self.paths.append(stream.path)
        try:
            stream.write(table)
        except Exception:
            stream.abandon()  # its file may end in a partial batch: what follows goes to a new one
            self._stream = None
            raise
