"""The live replay's pace: when a replayed day's work is done, so the next day may land.

A day is done once the loop has finished with it: the ingest job has published the online
snapshot as of it (its last step), no retrain run is in flight, and then every retrain sensor has
finished a tick that started after both. Each retrain decision is therefore taken as of the day it
names, whatever the machine's speed: the sensors see each day on its own, never a later day that
arrived while they were busy, so the same replay makes the same decisions on every machine. A
retrain sensor that is not running (stopped in the UI) holds no day up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from ct_assets.lib.core import names, runs
from ct_assets.lib.data.online_snapshot import published_as_of

RETRAIN_CAUSES = ("performance", "drift")
IN_FLIGHT = [dg.DagsterRunStatus(status) for status in runs.IN_FLIGHT]


def sensor_ticked_since(instance: dg.DagsterInstance, sensor: str, since: float) -> bool:
    """Has `sensor` finished a tick that started at or after `since` (epoch seconds)? A sensor that
    is not running (never started, or stopped in the UI) holds nothing up: it answers yes."""
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name != sensor:
            continue
        if not state.is_running:
            return True
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=since, limit=5)
        return any(tick.status != TickStatus.STARTED and tick.timestamp >= since for tick in ticks)
    return True


def last_run_end(instance: dg.DagsterInstance, job: str) -> tuple[bool, float]:
    """Whether a run of `job` is in flight, and when its last run ended (0 when none has)."""
    if instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=IN_FLIGHT), limit=1):
        return True, 0.0
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=job), limit=1)
    return False, (records[0].end_time or 0.0) if records else 0.0


def day_done(
    instance: dg.DagsterInstance,
    pipeline: str,
    snapshot_folder: Path,
    sensors: Sequence[str] | None = None,
    clock: Callable[[], float] = time.time,
    recheck_seconds: float = 1.0,
) -> Callable[[str], bool]:
    """The replay's `ready(day)`: the day is ingested and every retrain sensor has seen it (see
    the module). The snapshot's publication is timed by when `ready` first sees it. The instance
    is asked at most once per `recheck_seconds` (the replay asks after every batch it sends)."""
    watched = list(sensors or [names.sensor_name(pipeline, cause) for cause in RETRAIN_CAUSES])
    retrain_job = names.job_name(pipeline, "retrain")
    seen: dict[str, float] = {}
    last_asked = -math.inf

    def decided(day: str) -> bool:
        published = seen[day]
        in_flight, ended = last_run_end(instance, retrain_job)
        if in_flight:
            return False
        since = max(published, ended)
        return all(sensor_ticked_since(instance, sensor, since) for sensor in watched)

    def ready(day: str) -> bool:
        nonlocal last_asked
        as_of = published_as_of(snapshot_folder)
        if as_of is None or as_of < day:
            return False
        if as_of > day:
            return True  # a later day is ingested: this one was seen long ago
        seen.setdefault(day, clock())
        if time.monotonic() - last_asked < recheck_seconds:
            return False
        last_asked = time.monotonic()
        return decided(day)

    return ready
