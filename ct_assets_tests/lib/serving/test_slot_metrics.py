"""A slot's metrics in prometheus_client's multiprocess mode, as BentoML runs it: written by a real
worker process, read back merged from the files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ct_assets.lib.serving.slot_metrics import resident_bytes

_WORKER = """
from ct_assets.lib.serving.slot_metrics import SlotMetrics
metrics = SlotMetrics("blue", "v0007")
metrics.observe(5)
metrics.observe(3)
metrics.observe(0)
for requests in (1, 3, 3, 40):
    metrics.observe_batch(requests)
"""


def _merged(folder: Path) -> dict[str, float]:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            assert sample.labels.get("slot") == "blue" and sample.labels.get("model_version") == "v0007"
            bucket = sample.labels.get("le")
            found[sample.name + (f"[{bucket}]" if bucket else "")] = sample.value
    return found


def test_rows_batches_and_memory_from_a_worker_process(tmp_path: Path) -> None:
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two workers: counters add up
        subprocess.run([sys.executable, "-c", _WORKER], env=env, check=True, timeout=60)
    samples = _merged(tmp_path)
    assert samples["ct_predictions_total"] == 16
    assert samples["ct_batch_requests_count"] == 8 and samples["ct_batch_requests_sum"] == 94
    assert samples["ct_batch_requests_bucket[4.0]"] == 6 and samples["ct_batch_requests_bucket[+Inf]"] == 8
    # the memory gauge is the sum over the workers (each a Python with prometheus_client loaded)
    assert 2 * 5 * 2**20 < samples["ct_slot_memory_rss_bytes"] < 2 * 2**30


def test_resident_bytes_grow_with_allocated_memory() -> None:
    before = resident_bytes()
    block = bytearray(64 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert resident_bytes() - before > 32 * 2**20
    assert before > 1 * 2**20
