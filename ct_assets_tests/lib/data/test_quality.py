"""Robust bounds from earlier partitions, and outlier counts against them; columns with a
monitoring role (ids, calendar parts) are not checked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import demo_source
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.landing import partition_files
from ct_assets.lib.data.quality import ColumnStats, column_stats, count_outliers, robust_bounds
from ct_assets_tests.conftest import write_flights_variant


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


def test_skipped_columns_get_no_bounds() -> None:
    history = [ColumnStats(c, 100, 0.0, 10.0, 15.0, 20.0, 5.0, 25.0) for c in ("x", "day") for _ in range(3)]
    assert set(robust_bounds(history, k=3.0, skip={"day"})) == {"x"}


def test_too_little_history_means_no_bounds() -> None:
    assert robust_bounds([], k=3.0) == {}
    two = [ColumnStats("x", 100, 0.0, 10.0, 15.0, 20.0, 5.0, 25.0) for _ in range(2)]
    assert robust_bounds(two, k=3.0) == {}


def _validate_flights(root: Path, spec_change: dict) -> dict[str, int]:
    """Five days of flights through the real ingest and validation; the outliers of the fifth,
    judged against the four before it."""
    spec = load_spec(write_flights_variant(root / "pipelines" / "flights_delay", spec_change))
    landing = root / "landing"
    con = open_connection(root / "warehouse.duckdb")
    try:
        for day in CALENDAR_DAYS:
            demo_source.land_day(landing, spec.name, day)
            data_steps.ingest_raw(con, spec, day, partition_files(landing, spec.name, day))
            report = data_steps.validate_partition(con, spec, day)
    finally:
        con.close()
    return report.outliers


CALENDAR_DAYS = ["2013-01-06", "2013-01-07", "2013-01-08", "2013-01-09", "2013-01-20"]


def test_calendar_and_id_columns_are_left_out_of_the_outliers_check(tmp_path: Path) -> None:
    marked = _validate_flights(tmp_path / "marked", {})
    assert not {"day", "month", "year", "flight"} & set(marked)
    assert "distance" in marked and marked["distance"] == 0  # measurements are still checked
    unmarked = _validate_flights(tmp_path / "unmarked", {"columns.day.role": None})
    # the day of month walks: every row of the 20th is outside the bounds learned from the 6th-9th
    assert unmarked["day"] >= 500
