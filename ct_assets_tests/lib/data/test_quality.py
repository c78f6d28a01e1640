"""Robust bounds from earlier partitions, and outlier counts against them."""

from __future__ import annotations

import pandas as pd

from ct_assets.lib.data.quality import ColumnStats, column_stats, count_outliers, robust_bounds


def test_bounds_resist_one_bad_partition_and_flag_outliers(warehouse) -> None:
    history = [ColumnStats("x", 100, 0.0, 10.0, 15.0, 20.0, 5.0, 25.0) for _ in range(6)]
    history.append(ColumnStats("x", 100, 0.0, 500.0, 600.0, 900.0, 400.0, 990.0))  # broken one
    bounds = robust_bounds(history, k=2.0)
    assert bounds == {"x": (-15.0, 45.0)}
    frame = pd.DataFrame({"x": [12.0, 18.0, 44.0, 51.0, -25.0, None]})
    warehouse.register("frame", frame)
    assert count_outliers(warehouse, "frame", bounds) == {"x": 2}
    stats = {s.column: s for s in column_stats(warehouse, "frame", ["x"], [])}
    assert abs(stats["x"].null_rate - 1 / 6) < 1e-9 and stats["x"].q1 is not None


def test_mostly_zero_columns_use_the_percentile_range() -> None:
    history = [ColumnStats("days_late", 60, 0.0, 0.0, 0.0, 0.0, 0.0, 120.0) for _ in range(3)]
    assert robust_bounds(history, k=1.0) == {"days_late": (-120.0, 240.0)}


def test_too_little_history_means_no_bounds() -> None:
    assert robust_bounds([], k=3.0) == {}
    two = [ColumnStats("x", 100, 0.0, 10.0, 15.0, 20.0, 5.0, 25.0) for _ in range(2)]
    assert robust_bounds(two, k=3.0) == {}
