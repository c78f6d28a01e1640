"""day_keys: every ISO date of an inclusive range, across month and year ends."""

from __future__ import annotations

import pytest

from ct_assets.lib.core.dates import day_keys


def test_one_day_range_is_that_day() -> None:
    assert day_keys("2013-01-01", "2013-01-01") == ["2013-01-01"]


def test_range_includes_both_ends_across_a_year_end() -> None:
    assert day_keys("2012-12-30", "2013-01-02") == [
        "2012-12-30",
        "2012-12-31",
        "2013-01-01",
        "2013-01-02",
    ]


def test_leap_day_is_counted() -> None:
    keys = day_keys("2012-02-27", "2012-03-01")
    assert keys == ["2012-02-27", "2012-02-28", "2012-02-29", "2012-03-01"]
    assert len(day_keys("2013-01-01", "2013-12-31")) == 365


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="end 2013-01-01 is before start 2013-01-02"):
        day_keys("2013-01-02", "2013-01-01")


def test_non_iso_date_is_refused() -> None:
    with pytest.raises(ValueError):
        day_keys("01/02/2013", "2013-01-03")
