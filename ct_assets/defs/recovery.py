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
sensor runs this every 30 seconds under the daemon (`dagster dev`); `ct recover` evaluates the same
sensor on demand. The decisions are in `ct_assets.lib.core.runs`.
"""

from __future__ import annotations

import dagster as dg

from ct_assets.defs.shared import run_statuses
from ct_assets.lib.core import runs
from ct_assets.lib.core.runs import Recovered


def _worker_pids(instance: dg.DagsterInstance, run_id: str) -> dict[int, float]:
    """Each process that wrote an event of the run, with the time of its first event."""
    return runs.first_seen(
        (record.dagster_event.pid, record.timestamp)
        for record in instance.all_logs(run_id)
        if record.dagster_event is not None
    )


def _claimed_slots(instance: dg.DagsterInstance) -> list[str]:
    """The run id of every claimed concurrency slot, over every pool."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    return [
        slot.run_id
        for key in storage.get_concurrency_keys()
        for slot in storage.get_concurrency_info(key).claimed_slots
    ]


def recover_dead_runs(instance: dg.DagsterInstance) -> list[Recovered]:
    """Mark runs whose processes are all gone as failed and free the slots they hold."""
    if not runs.local_storage(type(instance.run_storage).__name__, type(instance.run_launcher).__name__):
        return []
    done: list[Recovered] = []
    storage = instance.event_log_storage
    held = runs.slot_counts(_claimed_slots(instance))
    holders = set(storage.get_concurrency_run_ids()) if storage.supports_global_concurrency_limits else set()
    executing = {
        run.run_id: run
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=run_statuses(runs.WORKER_HELD)))
    }
    workers = {run_id: _worker_pids(instance, run_id) for run_id in executing}
    for run_id in runs.dead_runs(workers):
        instance.report_run_failed(executing[run_id], message=runs.failure_message(workers[run_id]))
        if run_id in holders:
            storage.free_concurrency_slots_for_run(run_id)
        done.append(Recovered(run_id, sorted(workers[run_id]), True, held.get(run_id, 0)))
        holders.discard(run_id)
    if holders:
        finished = instance.get_runs(
            filters=dg.RunsFilter(run_ids=sorted(holders), statuses=run_statuses(runs.FINISHED))
        )
        workers = {run.run_id: _worker_pids(instance, run.run_id) for run in finished}
        for run_id in runs.stale_holders(workers):
            storage.free_concurrency_slots_for_run(run_id)
            done.append(Recovered(run_id, sorted(workers[run_id]), False, held.get(run_id, 0)))
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
        context.log.warning(item.describe())
    return dg.SkipReason(runs.report(recovered))


@dg.definitions
def recovery() -> dg.Definitions:
    return dg.Definitions(sensors=[dead_run_recovery])
