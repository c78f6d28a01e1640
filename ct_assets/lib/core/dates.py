"""Inclusive date ranges of partition keys."""

from __future__ import annotations

from datetime import date, timedelta


def day_keys(start: str, end: str) -> list[str]:
    """Every ISO date from `start` to `end`, both included."""
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise ValueError(f"end {end} is before start {start}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
