"""A slot's own Prometheus metrics, beside BentoML's request counters and latency histogram on the
same `/metrics` endpoint: rows scored, requests per feature query (adaptive batching: how many
requests each query served) and the resident memory of the slot's worker processes.

BentoML runs prometheus_client in multiprocess mode (each worker writes to files in
PROMETHEUS_MULTIPROC_DIR; `/metrics` merges them), so the metrics are created inside the worker,
after BentoML has set that folder. The memory gauge sums the live workers' values; it is refreshed
at most once a second, from `/proc/self/statm` (a read costs microseconds, no extra library).
"""

from __future__ import annotations

import os
import time

MEMORY_REFRESH_SECONDS = 1.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory (Linux)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


class SlotMetrics:
    """Rows scored (counter), requests per feature query (histogram) and worker memory (gauge),
    labelled with slot and model version."""

    def __init__(self, slot: str, model_version: str) -> None:
        # after BentoML has set PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads on import
        from prometheus_client import Counter, Gauge, Histogram

        labels = {"slot": slot, "model_version": model_version}
        self._rows = Counter("ct_predictions", "Rows scored by this slot", list(labels)).labels(**labels)
        self._memory = Gauge(
            "ct_slot_memory_rss_bytes",
            "Resident memory of the slot's worker processes (sum over live workers)",
            list(labels),
            multiprocess_mode="livesum",
        ).labels(**labels)
        self._batches = Histogram(
            "ct_batch_requests",
            "Requests featurized and scored together by one feature query (adaptive batching)",
            list(labels),
            buckets=BATCH_BUCKETS,
        ).labels(**labels)
        self._memory_at = 0.0
        self.observe(0)

    def observe_batch(self, requests: int) -> None:
        """Count one feature query and the requests it served."""
        self._batches.observe(requests)

    def observe(self, rows: int) -> None:
        """Count a scored request's rows; refresh the memory gauge when it is a second old."""
        if rows:
            self._rows.inc(rows)
        now = time.monotonic()
        if now - self._memory_at >= MEMORY_REFRESH_SECONDS:
            self._memory.set(resident_bytes())
            self._memory_at = now
