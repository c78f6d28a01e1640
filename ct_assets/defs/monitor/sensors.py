"""One pipeline's sensors: the drift and performance sensors that request a retrain, and the
landing sensor that loads context tables and ingests landed partitions (and names, once each, the
landing files whose name is not a partition key).

The decisions are lib functions (`lib.monitor.sensor_rules`, `lib.data.landing_state`); a sensor
reads the instance and the resources, asks them, and turns the answer into run requests.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.defs.resources import AlertSink, LandingZone, ModelRegistry, SnapshotFolder, Warehouse
from ct_assets.defs.shared import asset_key, run_statuses
from ct_assets.lib.core import names, runs
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import WarehouseMissing, open_connection
from ct_assets.lib.data import landing_names, landing_state
from ct_assets.lib.data.landing import LandingError
from ct_assets.lib.data.online_snapshot import published_as_of
from ct_assets.lib.monitor import sensor_rules
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets.lib.monitor.sensor_rules import Decide, TrainingRequest

LOST_RUN_RETRIES = 2


def retrain_sensor(spec: PipelineSpec, cause: str, decide: Decide, job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name=names.sensor_name(spec.name, cause),
        job=job,
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Requests a retrain when {cause} says so (rules in the spec's monitoring block).",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        warehouse: Warehouse,
        registry: ModelRegistry,
        alerts: AlertSink,
        snapshots: SnapshotFolder,
    ) -> dg.SensorResult | dg.SkipReason:
        return evaluate_retrain(context, spec, cause, decide, warehouse, registry, alerts, snapshots)

    return _sensor


def _request(spec: PipelineSpec, request: TrainingRequest) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=request.run_key,
        run_config=names.training_run_config(spec.name, request.as_of),
        tags=request.tags,
    )


def evaluate_retrain(
    context: dg.SensorEvaluationContext,
    spec: PipelineSpec,
    cause: str,
    decide: Decide,
    warehouse: Warehouse,
    registry: ModelRegistry,
    sink: AlertSink,
    snapshots: SnapshotFolder | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: read the latest signals, apply the rule, honour the cooldown, request a run.

    With `snapshots`, only partitions whose ingest has finished count (the online snapshot is
    published as of them), so a model is never trained as of a partition that serving cannot
    serve yet."""
    import duckdb  # 0.3 s to load: the code location loads without it

    busy = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=names.job_name(spec.name, "retrain"), statuses=run_statuses(runs.IN_FLIGHT)
        ),
        limit=1,
    )
    if busy:
        return dg.SkipReason(sensor_rules.busy(busy[0].run_id))
    record = registry.for_pipeline(spec.name).champion()
    complete = published_as_of(snapshots.folder(spec.name)) if snapshots else sensor_rules.ALL_PARTITIONS
    skip = sensor_rules.champion_needed(cause, record is not None) or sensor_rules.nothing_ingested(complete)
    if skip or complete is None:
        return dg.SkipReason(skip)
    rules = spec.monitoring
    try:
        con = open_connection(warehouse.path, read_only=True, retries=12)  # ~15 s between writers
    except duckdb.IOException:
        return dg.SkipReason(sensor_rules.WAREHOUSE_BUSY)
    except WarehouseMissing as missing:
        return dg.SkipReason(str(missing))
    try:
        if record is None:
            decided = sensor_rules.first_model(
                monitor_steps.feature_partition_rows(con, spec), complete, spec.training
            )
        else:
            signals = monitor_steps.recent_signals(
                con, spec, sensor_rules.signal_count(rules), record.version
            )
            last = sensor_rules.last_request(context.cursor)
            since = monitor_steps.partitions_since(con, spec, last["partition"]) if last else 0
            signals = [signal for signal in signals if signal.partition <= complete]
            decided = sensor_rules.retrain(cause, decide, signals, record, rules, last, since)
    finally:
        con.close()
    if isinstance(decided, str):
        return dg.SkipReason(decided)
    if decided.alert:
        sink.notify(
            spec,
            "info",
            decided.as_of,
            decided.alert,
            "watch the retrain run; the gate decides whether the champion changes",
        )
    if decided.cursor is not None:
        context.update_cursor(decided.cursor)
    return dg.SensorResult(run_requests=[_request(spec, decided)])


def _context_fingerprint(spec: PipelineSpec, landing: LandingZone) -> str | None:
    """The context files' hashes, or None while one of them has not landed."""

    try:
        paths = [landing.context_file(spec.name, table) for table in spec.context_tables]
    except LandingError:
        return None
    return landing_state.fingerprint(paths)


def _ingest_request(job_name: str, run: landing_state.PartitionRun) -> dg.RunRequest:
    tags = {"ct/trigger": "landing"}
    if run.single:
        return dg.RunRequest(job_name=job_name, partition_key=run.first, run_key=run.run_key, tags=tags)
    tags |= {"dagster/asset_partition_range_start": run.first, "dagster/asset_partition_range_end": run.last}
    return dg.RunRequest(job_name=job_name, run_key=run.run_key, tags=tags)


def landing_sensor(spec: PipelineSpec, job: Any, context_job: Any) -> dg.SensorDefinition:
    partitions_def = job.partitions_def
    raw_key = asset_key(spec, "raw")
    context_keys = [asset_key(spec, f"context_{t}") for t in spec.context_tables]

    @dg.sensor(
        name=names.sensor_name(spec.name, "landing"),
        jobs=[job, context_job] if context_keys else [job],
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Loads the context tables when their files land or change, ingests each partition whose "
        f"landing files arrive or change, and asks again (up to {LOST_RUN_RETRIES} times) for a landed "
        "partition whose ingest run was lost or failed.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult | dg.SkipReason:
        cursor = landing_state.parse(context.cursor)
        requests = []
        if context_keys:
            fingerprint = _context_fingerprint(spec, landing)
            if fingerprint is None:
                return dg.SkipReason("waiting for the context tables' landing files")
            run_key = landing_state.context_changed(cursor, fingerprint)
            if run_key:
                requests.append(
                    dg.RunRequest(job_name=context_job.name, run_key=run_key, tags={"ct/trigger": "landing"})
                )
            loaded = all(context.instance.get_latest_materialization_event(k) for k in context_keys)
            if not loaded:  # features join the context tables: ingest once they are in the warehouse
                return _waiting(requests, cursor, "waiting for the context tables to load")
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job.name, statuses=run_statuses(runs.IN_FLIGHT)), limit=1
        )
        if busy:  # one ingest run at a time: the days that land meanwhile go together in the next one
            return _waiting(requests, cursor, f"waiting for ingest run {busy[0].run_id[:8]}")
        had_misnamed = list(cursor.get("misnamed", []))
        misnamed = landing_state.newly_misnamed(
            cursor, landing_names.misnamed(Path(landing.root), spec.name, spec.partitions)
        )
        for entry in misnamed:
            context.log.warning(str(entry))
        ordered = partitions_def.get_partition_keys(dynamic_partitions_store=context.instance)
        landed = [
            (key, landing_state.fingerprint(landing.partition_files(spec.name, key)))
            for key in landing_state.in_order(landing.landed_keys(spec.name), ordered)
        ]
        ingested = context.instance.get_materialized_partitions(raw_key)
        unseen = [key for key, _ in landed if key in ingested and key not in cursor.get("seen", {})]
        ingested_from = _ingested_fingerprints(context.instance, raw_key, unseen)
        pending = landing_state.pending(cursor, landed, ingested, LOST_RUN_RETRIES, ingested_from)
        requests += [_ingest_request(job.name, run) for run in landing_state.partition_runs(pending, ordered)]
        if not requests:
            idle = "no new or changed landing files"
            if cursor.get("misnamed", []) != had_misnamed:  # remember which entries were named
                return _waiting([], cursor, "; ".join([idle, *map(str, misnamed)]))
            return dg.SkipReason(idle)
        return dg.SensorResult(run_requests=requests, cursor=landing_state.dump(cursor))

    return _sensor


def _ingested_fingerprints(
    instance: dg.DagsterInstance, raw_key: dg.AssetKey, keys: list[str]
) -> dict[str, str]:
    """The fingerprint of the files each partition's latest raw materialization read (its
    `source_sha256` metadata), for partitions ingested before the sensor first looked at them."""
    found: dict[str, str] = {}
    wanted, cursor = set(keys), None
    while wanted:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw_key, asset_partitions=sorted(wanted)),
            limit=500,
            cursor=cursor,
        )
        for record in page.records:  # newest first: the first one seen per partition is its latest
            key = record.partition_key
            if key in wanted:
                wanted.discard(key)
                hashes = record.asset_materialization.metadata.get("source_sha256")
                if hashes is not None and hashes.value:
                    found[key] = landing_state.fingerprint_of(str(hashes.value).split(", "))
        if not page.has_more:
            break
        cursor = page.cursor
    return found


def _waiting(requests: list[dg.RunRequest], cursor: dict[str, Any], reason: str) -> dg.SensorResult:
    return dg.SensorResult(
        run_requests=requests, cursor=landing_state.dump(cursor), skip_reason=None if requests else reason
    )
