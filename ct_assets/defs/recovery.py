"""Recovery from killed runs: a run whose worker died (SIGKILL, OOM, power cut) is marked failed
and its concurrency slots are freed, so the next run that writes the warehouse does not wait forever.

Why: the warehouse's writers share the `duckdb_warehouse` pool (limit 1). A run worker killed
mid-step never releases its slot and its run stays STARTED; Dagster's default run launcher cannot
check a worker's health, and the daemon frees slots only of runs that have ended. Seen here: after
a SIGKILL mid-partition, the rerun of the same backfill waited on the pool for over 5 minutes.

A run counts as dead when every process that wrote its events (the run worker, step workers) is
gone from this machine. Only the embedded default is handled (default run launcher, SQLite storage:
every run ran here); with shared Postgres storage a run may live on another machine, so this stays
out and Dagster's run monitoring (with a launcher that checks worker health) is the tool. The
sensor runs this every 30 seconds under the daemon (`dagster dev`); `recover_dead_runs(instance)`
is the same step on demand.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from ct_assets.lib.core import processes

IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class Recovered:
    run_id: str
    pids: list[int]
    marked_failed: bool
    freed_slots: int


def _worker_pids(instance: dg.DagsterInstance, run_id: str) -> dict[int, float]:
    """Each process that wrote an event of the run, with the time of its first event."""
    first: dict[int, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is not None and event.pid is not None:
            first[event.pid] = min(first.get(event.pid, record.timestamp), record.timestamp)
    return first


def _all_gone(pids: dict[int, float]) -> bool:
    return bool(pids) and not any(processes.is_running(pid, started) for pid, started in pids.items())


def _held_slots(instance: dg.DagsterInstance) -> dict[str, int]:
    """Concurrency slots claimed per run, over every pool."""
    storage = instance.event_log_storage
    held: dict[str, int] = {}
    if not storage.supports_global_concurrency_limits:
        return held
    for key in storage.get_concurrency_keys():
        for slot in storage.get_concurrency_info(key).claimed_slots:
            held[slot.run_id] = held.get(slot.run_id, 0) + 1
    return held


def _local_storage(instance: dg.DagsterInstance) -> bool:
    """SQLite storage: every run of this instance ran on this machine, so a process id means
    something here. Shared storage (Postgres) may hold runs of other machines: hands off."""
    return "sqlite" in type(instance.run_storage).__name__.lower()


def recover_dead_runs(instance: dg.DagsterInstance) -> list[Recovered]:
    """Mark runs whose processes are all gone as failed and free the slots they hold."""
    if type(instance.run_launcher).__name__ != "DefaultRunLauncher" or not _local_storage(instance):
        return []
    done: list[Recovered] = []
    storage = instance.event_log_storage
    held = _held_slots(instance)
    holders = set(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        pids = _worker_pids(instance, run.run_id)
        if not _all_gone(pids):
            continue
        instance.report_run_failed(
            run,
            message=f"the run's processes ({', '.join(map(str, sorted(pids)))}) are gone: the run worker "
            "was killed or crashed. Marked failed by ct recovery; rerun its partitions.",
        )
        if run.run_id in holders:
            storage.free_concurrency_slots_for_run(run.run_id)
        done.append(Recovered(run.run_id, sorted(pids), True, held.get(run.run_id, 0)))
        holders.discard(run.run_id)
    if holders:
        for run in instance.get_runs(filters=dg.RunsFilter(run_ids=sorted(holders), statuses=FINISHED)):
            pids = _worker_pids(instance, run.run_id)
            if not pids or _all_gone(pids):
                storage.free_concurrency_slots_for_run(run.run_id)
                done.append(Recovered(run.run_id, sorted(pids), False, held.get(run.run_id, 0)))
    return done


@dg.sensor(
    name="dead_run_recovery",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose worker was killed as failed and frees their concurrency slots "
    "(the warehouse pool), so later runs do not wait forever.",
)
def dead_run_recovery(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_dead_runs(context.instance)
    for item in recovered:
        context.log.warning(
            f"run {item.run_id}: processes {item.pids} gone; "
            f"{'marked failed, ' if item.marked_failed else ''}freed {item.freed_slots} slot(s)"
        )
    if not recovered:
        return dg.SkipReason("no run with a dead worker")
    return dg.SkipReason(
        "recovered " + ", ".join(f"{r.run_id[:8]} ({r.freed_slots} slot(s) freed)" for r in recovered)
    )


@dg.definitions
def recovery() -> dg.Definitions:
    return dg.Definitions(sensors=[dead_run_recovery])
