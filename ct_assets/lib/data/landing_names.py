"""Landing files whose name is not a partition key, so nothing ingests their rows.

A partition's files are found by its key alone (`<key>.csv`, `<key>.parquet` or a `<key>/`
folder), so a file named for another day (a Tuesday in a weekly pipeline, a day before the
pipeline's start) is never read. `misnamed` lists such entries with the key their name should be;
the landing sensor names each one once, and `ct spec check` warns of them. Entries that are not
landing data (hidden or `_` ones, other formats, empty folders) are left out, as the sensor
leaves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PartitionSpec
from ct_assets.lib.data.landing import FORMATS, pipeline_folder


@dataclass(frozen=True)
class Misnamed:
    """A landing entry that no partition reads, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: its rows are not ingested: {self.reason}"


def _containing(grain: str, day: date) -> date:
    """The start of the partition `day` falls in (weeks start on Sunday)."""
    if grain == "weekly":
        return day - timedelta(days=day.isoweekday() % 7)
    if grain == "monthly":
        return day.replace(day=1)
    return day


def _last(spec: PartitionSpec) -> date | None:
    """The last partition's key when the spec has an end (which is exclusive)."""
    if spec.end is None:
        return None
    return _containing(spec.grain, spec.end - timedelta(days=1))


def reason(spec: PartitionSpec, name: str) -> str | None:
    """Why `name` (a file's stem or a folder's name) is not a key of the spec's partitions, with
    the key(s) to use instead; None for a key (including one of a partition still to come)."""
    try:
        day = date.fromisoformat(name)
    except ValueError:
        day = None
    if day is None or day.isoformat() != name:
        return (
            "not a partition key: the name must be the ISO date its partition starts on, "
            f"such as {spec.start}"
        )
    last, start = _last(spec), _containing(spec.grain, day)
    if start < spec.start:
        return f"{name} is before the first partition, {spec.start}"
    if last is not None and start > last:
        return f"{name} is after the last partition, {last} (the spec's end {spec.end} is exclusive)"
    if start == day:
        return None
    if spec.grain == "weekly":
        what, period = f"{name} is a {day:%A}, and weekly partitions are keyed by their Sunday", "week"
    else:
        what, period = f"{name} is not the first of a month, and monthly partitions are keyed by it", "month"
    options = [
        k
        for k in (start, partition_window(spec, start.isoformat())[1].date())
        if k >= spec.start and (last is None or k <= last)
    ]
    named = [f"{k} (the {period} it falls in)" if k == start else f"{k} (the next {period})" for k in options]
    return f"{what}: rename it {' or '.join(named)}"


def misnamed(landing_root: Path, pipeline: str, spec: PartitionSpec) -> list[Misnamed]:
    """The pipeline's landing files and folders whose name is not a partition key, by name."""
    folder = pipeline_folder(landing_root, pipeline)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_file() and path.suffix.lower() in FORMATS:
            name = path.stem
            if path.suffix not in FORMATS and reason(spec, name) is None:
                lower = f"{name}{path.suffix.lower()}"
                found.append(Misnamed(path, f"the extension must be lower-case: rename it {lower}"))
                continue
        elif path.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in path.iterdir()):
            name = path.name
        else:
            continue
        why = reason(spec, name)
        if why is not None:
            found.append(Misnamed(path, why))
    return found
