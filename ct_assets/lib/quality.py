"""Continuous data quality: per-partition column statistics, and outliers against robust bounds
learned from earlier partitions.

Bounds are Tukey fences on the medians of earlier partitions' quartiles, so one bad partition in
the history cannot move them much, and a column's own partition cannot hide its outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING

from ct_assets.lib.warehouse import quote

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


def column_stats(con: duckdb.DuckDBPyConnection, source: str, numeric: list[str],
                 others: list[str]) -> list[ColumnStats]:
    """Null rate of every column, and quartiles of the numeric ones, over `source`."""
    parts = ["count(*)"]
    for column in numeric:
        col = quote(column)
        parts += [f"count({col})", f"quantile_cont({col}::DOUBLE, [0.25, 0.5, 0.75])"]
    parts += [f"count({quote(column)})" for column in others]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {source}").fetchall()[0]
    total = int(row[0])
    stats = []
    for index, column in enumerate(numeric):
        present, quartiles = row[1 + 2 * index], row[2 + 2 * index]
        q1, mid, q3 = quartiles if quartiles else (None, None, None)
        stats.append(ColumnStats(column, total, 1 - present / total if total else 0.0, q1, mid, q3))
    offset = 1 + 2 * len(numeric)
    for index, column in enumerate(others):
        present = row[offset + index]
        stats.append(ColumnStats(column, total, 1 - present / total if total else 0.0, None, None, None))
    return stats


def robust_bounds(history: list[ColumnStats], k: float) -> dict[str, tuple[float, float]]:
    """Per column, [median q1 - k*IQR, median q3 + k*IQR] over earlier partitions' quartiles."""
    by_column: dict[str, list[ColumnStats]] = {}
    for stats in history:
        if stats.q1 is not None and stats.q3 is not None:
            by_column.setdefault(stats.column, []).append(stats)
    bounds = {}
    for column, items in by_column.items():
        q1 = median(s.q1 for s in items if s.q1 is not None)
        q3 = median(s.q3 for s in items if s.q3 is not None)
        spread = q3 - q1
        bounds[column] = (q1 - k * spread, q3 + k * spread)
    return bounds


def count_outliers(con: duckdb.DuckDBPyConnection, source: str,
                   bounds: dict[str, tuple[float, float]]) -> dict[str, int]:
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
