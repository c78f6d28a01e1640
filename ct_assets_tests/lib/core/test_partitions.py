"""Partition keys: the event-time window of each grain in its timezone, and the keys before one."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ct_assets.lib.core.partitions import partition_start, partition_window, previous_keys
from ct_assets.lib.core.spec import PartitionSpec


def _spec(grain: str, start: str = "2013-01-01", timezone: str = "UTC") -> PartitionSpec:
    return PartitionSpec(grain=grain, start=date.fromisoformat(start), timezone=timezone)


def test_partition_start_reads_iso_keys_only() -> None:
    assert partition_start("2013-02-28") == date(2013, 2, 28)
    with pytest.raises(ValueError, match="partition key 'tomorrow' is not an ISO date"):
        partition_start("tomorrow")


def test_daily_window_is_half_open_in_the_spec_timezone() -> None:
    start, end = partition_window(_spec("daily", timezone="America/New_York"), "2013-01-01")
    zone = ZoneInfo("America/New_York")
    assert (start, end) == (datetime(2013, 1, 1, tzinfo=zone), datetime(2013, 1, 2, tzinfo=zone))
    assert start.utcoffset() == timedelta(hours=-5)


def test_daily_window_over_a_daylight_saving_change_is_23_hours() -> None:
    start, end = partition_window(_spec("daily", timezone="America/New_York"), "2013-03-10")
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


def test_weekly_and_monthly_windows() -> None:
    assert partition_window(_spec("weekly", "2012-12-30"), "2013-01-06")[1].date() == date(2013, 1, 13)
    assert partition_window(_spec("monthly"), "2013-01-01")[1].date() == date(2013, 2, 1)
    assert partition_window(_spec("monthly"), "2013-12-01")[1].date() == date(2014, 1, 1)


def test_previous_daily_keys_oldest_first_and_stop_at_the_spec_start() -> None:
    spec = _spec("daily")
    assert previous_keys(spec, "2013-01-05", 3) == ["2013-01-02", "2013-01-03", "2013-01-04"]
    assert previous_keys(spec, "2013-01-03", 5) == ["2013-01-01", "2013-01-02"]
    assert previous_keys(spec, "2013-01-01", 2) == []


def test_previous_weekly_and_monthly_keys() -> None:
    assert previous_keys(_spec("weekly", "2012-12-30"), "2013-01-13", 2) == ["2012-12-30", "2013-01-06"]
    monthly = _spec("monthly", start="2012-11-01")
    assert previous_keys(monthly, "2013-02-01", 5) == ["2012-11-01", "2012-12-01", "2013-01-01"]


def test_a_start_must_begin_a_partition_of_its_grain() -> None:
    with pytest.raises(ValueError, match="2017-01-02 is a Monday; use 2017-01-01 or 2017-01-08"):
        _spec("weekly", "2017-01-02")
    with pytest.raises(ValueError, match="use 2017-03-01 instead of 2017-03-15"):
        _spec("monthly", "2017-03-15")
    assert _spec("weekly", "2017-01-01").start == date(2017, 1, 1)
    assert _spec("daily", "2017-01-02").start == date(2017, 1, 2)
