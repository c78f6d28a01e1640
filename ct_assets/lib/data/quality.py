"""Continuous data quality: per-partition column statistics, and outliers against robust bounds
learned from earlier partitions.

Bounds are fences around the medians (over earlier partitions) of each column's 1st and 99th
percentiles, widened by k times the median interquartile range (or, for columns whose quartiles
coincide, such as mostly-zero counts, by k times the 1-99 percentile range). Taking medians over
partitions means one bad partition in the history cannot move the bounds much, and a partition's
own outliers cannot hide themselves. Bounds need a few partitions of history.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING

from ct_assets.lib.core.warehouse import quote

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class ColumnStats:
    column: str
    rows: int
    null_rate: float
    q1: float | None
    median: float | None
    q3: float | None
    p01: float | None = None
    p99: float | None = None


def column_stats(
    con: duckdb.DuckDBPyConnection, source: str, numeric: list[str], others: list[str]
) -> list[ColumnStats]:
    """Null rate of every column, and quartiles of the numeric ones, over `source`."""
    parts = ["count(*)"]
    for column in numeric:
        col = quote(column)
        parts += [f"count({col})", f"quantile_cont({col}::DOUBLE, [0.25, 0.5, 0.75, 0.01, 0.99])"]
    parts += [f"count({quote(column)})" for column in others]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchall()[0]
    total = int(row[0])
    stats = []
    for index, column in enumerate(numeric):
        present, quartiles = row[1 + 2 * index], row[2 + 2 * index]
        q1, mid, q3, p01, p99 = quartiles if quartiles else (None,) * 5
        null_rate = 1 - present / total if total else 0.0
        stats.append(ColumnStats(column, total, null_rate, q1, mid, q3, p01, p99))
    offset = 1 + 2 * len(numeric)
    for index, column in enumerate(others):
        present = row[offset + index]
        stats.append(ColumnStats(column, total, 1 - present / total if total else 0.0, None, None, None))
    return stats


MIN_HISTORY = 3


def robust_bounds(
    history: list[ColumnStats], k: float, skip: Collection[str] = ()
) -> dict[str, tuple[float, float]]:
    """Per column, fences around the median 1st/99th percentiles of earlier partitions.

    Columns with fewer than MIN_HISTORY partitions of history get no bounds, nor do the columns in
    `skip` (ids, counters and calendar parts such as a day of month, whose values walk with time:
    the spec's `unmonitored_columns`).
    """
    by_column: dict[str, list[ColumnStats]] = {}
    for stats in history:
        if stats.column not in skip and None not in (stats.q1, stats.q3, stats.p01, stats.p99):
            by_column.setdefault(stats.column, []).append(stats)
    bounds = {}
    for column, items in by_column.items():
        if len(items) < MIN_HISTORY:
            continue
        low = median(s.p01 for s in items)  # type: ignore[misc]
        high = median(s.p99 for s in items)  # type: ignore[misc]
        spread = median(s.q3 - s.q1 for s in items) or (high - low)  # type: ignore[operator]
        bounds[column] = (low - k * spread, high + k * spread)
    return bounds


def count_outliers(
    con: duckdb.DuckDBPyConnection, source: str, bounds: dict[str, tuple[float, float]]
) -> dict[str, int]:
    """Values outside their column's bounds, per column."""
    if not bounds:
        return {}
    columns = list(bounds)
    parts = [
        f"count(*) FILTER (WHERE {quote(c)} < {bounds[c][0]!r} OR {quote(c)} > {bounds[c][1]!r})"
        for c in columns
    ]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchall()[0]
    return {column: int(count) for column, count in zip(columns, row, strict=True)}
