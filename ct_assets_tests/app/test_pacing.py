"""The replay's pace on a real Dagster instance: a day is done once its snapshot is published, no
retrain is in flight, and each retrain sensor has finished a tick (recorded in the instance's
schedule storage, as the daemon records them) that started after both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ct_assets.app.pacing import day_done, sensor_ticked_since
from ct_assets.lib.data.online_snapshot import MANIFEST

SENSORS = ("p_performance_sensor", "p_drift_sensor")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _origin(sensor: str) -> RemoteInstigatorOrigin:
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__), location_name="ct")
    return RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), sensor)


def _start_sensors(instance: dg.DagsterInstance) -> None:
    for sensor in SENSORS:
        instance.add_instigator_state(
            InstigatorState(
                _origin(sensor), InstigatorType.SENSOR, InstigatorStatus.RUNNING, SensorInstigatorData()
            )
        )


def _tick(
    instance: dg.DagsterInstance, sensor: str, at: float, status: TickStatus = TickStatus.SKIPPED
) -> None:
    origin = _origin(sensor)
    instance.create_tick(
        TickData(
            instigator_origin_id=origin.get_id(),
            instigator_name=sensor,
            instigator_type=InstigatorType.SENSOR,
            status=status,
            timestamp=at,
            selector_id=origin.get_selector().get_id(),
        )
    )


def _publish(folder: Path, day: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps({"as_of_partition": day}))


def test_a_running_sensor_counts_only_finished_ticks_that_started_after_the_moment(
    instance: dg.DagsterInstance,
) -> None:
    _start_sensors(instance)
    _tick(instance, SENSORS[0], 100.0)
    _tick(instance, SENSORS[0], 200.0, TickStatus.STARTED)
    assert sensor_ticked_since(instance, SENSORS[0], 50.0)
    assert not sensor_ticked_since(instance, SENSORS[0], 150.0), "a tick still running has not decided"
    assert not sensor_ticked_since(instance, SENSORS[1], 50.0)
    assert sensor_ticked_since(instance, "p_landing_sensor", 0.0), "a sensor never started holds nothing up"
    stopped = _origin(SENSORS[1])
    instance.update_instigator_state(
        InstigatorState(stopped, InstigatorType.SENSOR, InstigatorStatus.STOPPED, SensorInstigatorData())
    )
    assert sensor_ticked_since(instance, SENSORS[1], 50.0), "nor does a stopped one"


def test_a_day_is_done_once_published_and_seen_by_every_retrain_sensor(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _start_sensors(instance)
    now = [1000.0]
    ready = day_done(instance, "p", tmp_path, SENSORS, clock=lambda: now[0], recheck_seconds=0)
    assert not ready("2013-02-13"), "nothing published"
    _publish(tmp_path, "2013-02-12")
    assert not ready("2013-02-13"), "published as of an earlier day"
    _publish(tmp_path, "2013-02-13")
    _tick(instance, SENSORS[0], 990.0)  # before the snapshot was seen: it decided on the day before
    assert not ready("2013-02-13")
    now[0] = 1010.0
    _tick(instance, SENSORS[0], 1005.0)
    assert not ready("2013-02-13"), "the drift sensor has not seen the day yet"
    _tick(instance, SENSORS[1], 1012.0)
    assert ready("2013-02-13")
    _publish(tmp_path, "2013-02-14")
    assert ready("2013-02-13"), "a later day is ingested"


def test_a_retrain_in_flight_holds_the_day_until_the_sensors_tick_after_it(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _start_sensors(instance)
    _publish(tmp_path, "2013-02-13")
    now = [1000.0]
    ready = day_done(instance, "p", tmp_path, SENSORS, clock=lambda: now[0], recheck_seconds=0)
    assert not ready("2013-02-13")
    for sensor in SENSORS:
        _tick(instance, sensor, 1001.0)
    run = instance.create_run_for_job(dg.GraphDefinition("p_retrain", node_defs=[]).to_job("p_retrain"))
    instance.handle_run_event(run.run_id, _run_event(dg.DagsterEventType.RUN_START))
    assert not ready("2013-02-13"), "a retrain is running"
    instance.handle_run_event(run.run_id, _run_event(dg.DagsterEventType.RUN_SUCCESS))
    ended = instance.get_run_record_by_id(run.run_id).end_time
    assert ended is not None
    assert not ready("2013-02-13"), "the sensors have not ticked since the retrain ended"
    for sensor in SENSORS:
        _tick(instance, sensor, ended + 1)
    assert ready("2013-02-13")


def _run_event(kind: dg.DagsterEventType) -> dg.DagsterEvent:
    return dg.DagsterEvent(kind.value, "p_retrain")


def test_the_instance_is_asked_at_most_once_per_recheck_interval(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    _start_sensors(instance)
    _publish(tmp_path, "2013-02-13")
    ready = day_done(instance, "p", tmp_path, SENSORS, clock=lambda: 1000.0, recheck_seconds=3600)
    assert not ready("2013-02-13")
    for sensor in SENSORS:
        _tick(instance, sensor, 1001.0)
    assert not ready("2013-02-13"), "asked again within the interval: not yet"
    _publish(tmp_path, "2013-02-14")
    assert ready("2013-02-13"), "a later day ingested needs no question"
