"""Per-partition service metrics: requests, rows, latency and throughput per slot (from the
prediction log), errors per slot (from the proxy's counters) and each slot's memory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.processes import descendants, is_running
from ct_assets.lib.model.report_plots import png_bytes

if TYPE_CHECKING:
    import pandas as pd


def summarize(logged: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per slot: requests, rows, p50/p99 latency (ms) and rows per second of wall time."""
    import pandas as pd

    rows = []
    for slot, part in logged.groupby("slot"):
        per_request = part.groupby("request_id").agg(
            latency=("latency_ms", "first"), rows=("entity_id", "size")
        )
        times = pd.to_datetime(part["time"], utc=True, format="ISO8601")
        span = (times.max() - times.min()).total_seconds()
        rows.append(
            {
                "slot": slot,
                "model_versions": ", ".join(sorted(part["model_version"].unique())),
                "requests": len(per_request),
                "rows": int(per_request["rows"].sum()),
                "p50_ms": float(per_request["latency"].quantile(0.5)),
                "p99_ms": float(per_request["latency"].quantile(0.99)),
                "rows_per_second": float(per_request["rows"].sum() / span) if span > 0 else None,
            }
        )
    return rows


def process_rss_mib(pid: int) -> float | None:
    """Resident memory of a process and all its descendants (a slot's server and its workers, which
    BentoML starts in sessions of their own, so the server's process group misses them), in MiB."""
    if not is_running(pid):
        return None
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # it ended meanwhile
    return total / 1024


def latency_png(logged: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for slot, part in logged.groupby("slot"):
        axis.hist(part.groupby("request_id")["latency_ms"].first(), bins=40, alpha=0.6, label=str(slot))
    axis.set(title="Request latency per slot", xlabel="ms", ylabel="requests")
    axis.legend()
    return png_bytes(figure)
