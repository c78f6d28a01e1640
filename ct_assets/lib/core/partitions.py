"""Partition keys and the event-time window each one covers."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ct_assets.lib.core.spec import PartitionSpec


def partition_start(key: str) -> date:
    """Keys are the ISO date a partition starts on (Dagster's daily, weekly and monthly keys)."""
    try:
        return date.fromisoformat(key)
    except ValueError as err:
        raise ValueError(f"partition key {key!r} is not an ISO date") from err


def _next_start(grain: str, start: date) -> date:
    if grain == "daily":
        return start + timedelta(days=1)
    if grain == "weekly":
        return start + timedelta(days=7)
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def partition_window(spec: PartitionSpec, key: str) -> tuple[datetime, datetime]:
    """The half-open [start, end) event-time window of a partition, in the spec's timezone."""
    zone = ZoneInfo(spec.timezone)
    start = partition_start(key)
    end = _next_start(spec.grain, start)
    return datetime.combine(start, time(), zone), datetime.combine(end, time(), zone)


def previous_keys(spec: PartitionSpec, key: str, count: int) -> list[str]:
    """Up to `count` partition keys before `key` (oldest first), not before the spec's start."""
    keys: list[str] = []
    current = partition_start(key)
    while len(keys) < count:
        if spec.grain == "daily":
            current -= timedelta(days=1)
        elif spec.grain == "weekly":
            current -= timedelta(days=7)
        else:
            current = date(current.year - (current.month == 1), (current.month - 2) % 12 + 1, 1)
        if current < spec.start:
            break
        keys.append(current.isoformat())
    return list(reversed(keys))
