"""Builds one pipeline's monitoring layer: profile, live_performance and drift per partition, a
segment dashboard, the ingest and retrain jobs, and the sensors and schedule that close the loop.
"""

import json
from typing import Any

import dagster as dg

from ct_assets.defs.data.factory import INGEST_TAGS, group_asset_name, partitions_def
from ct_assets.defs.resources import (
    WAREHOUSE_POOL,
    AlertSink,
    LandingZone,
    ModelRegistry,
    ProfileStore,
    SnapshotFolder,
    Warehouse,
)
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.model import report_plots
from ct_assets.lib.monitor import alerts, dashboards
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets.lib.monitor.retrain_policy import (
    Decision,
    drift_decision,
    first_model_decision,
    performance_decision,
)

RETRAIN_ASSETS = ["training_set", "candidate", "evaluation", "champion"]
INGEST_ASSETS = [
    "raw",
    "validated",
    "quarantine",
    "features",
    "profile",
    "predictions",
    "live_performance",
    "drift",
    "online_snapshot",
]


def _key(spec: PipelineSpec, name: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, name])


def _alert(
    spec: PipelineSpec, sink: AlertSink, tier: alerts.Tier, partition: str | None, cause: str, action: str
) -> alerts.Alert:
    alert = alerts.Alert(
        tier, spec.name, partition, cause, action, spec.monitoring.owners.get(tier, spec.owner)
    )
    sink.send(alert)
    return alert


def build_monitor_defs(spec: PipelineSpec) -> dg.Definitions:
    partitions = partitions_def(spec)
    profile_key, drift_key = _key(spec, "profile"), _key(spec, "drift")
    live_key, champion_key = _key(spec, "live_performance"), _key(spec, "champion")

    @dg.asset(
        key=profile_key,
        group_name=spec.name,
        deps=[_key(spec, "features")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"whylogs"},
        description="whylogs profile of the partition's features, kept in the profile store; "
        "partition profiles merge into a model's reference window.",
    )
    def profile(
        context: dg.AssetExecutionContext, warehouse: Warehouse, profiles: ProfileStore
    ) -> dg.MaterializeResult:
        store = profiles.for_pipeline(spec.name)
        with warehouse.connect() as con:
            rows = {k: monitor_steps.profile_step(con, spec, k, store) for k in context.partition_keys}
        return dg.MaterializeResult(
            metadata={"dagster/row_count": sum(rows.values()), "profiles": dg.MetadataValue.json(rows)}
        )

    @dg.asset(
        key=live_key,
        group_name=spec.name,
        deps=[_key(spec, "features"), champion_key, _key(spec, "predictions")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"catboost"},
        description="The serving model's AUC, log-loss and calibration on the partition, overall "
        "and per segment. Until serving logs exist, the champion scores the partition.",
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        registry: ModelRegistry,
        profiles: ProfileStore,
        alerts: AlertSink,
    ) -> dg.MaterializeResult:
        summary: dict[str, Any] = {}
        raised = []
        with warehouse.connect() as con:
            for key in context.partition_keys:
                report = monitor_steps.live_performance_step(
                    con, spec, key, registry.for_pipeline(spec.name), profiles.for_pipeline(spec.name)
                )
                if report is None:
                    summary[key] = "no champion yet"
                    continue
                auc = report.evaluation.overall.auc
                summary[key] = {
                    "model": report.model_version,
                    "auc": auc,
                    "log_loss": report.evaluation.overall.log_loss,
                    "ece": report.evaluation.overall.ece,
                    "rows": report.evaluation.overall.rows,
                }
                if auc is not None and auc < spec.monitoring.performance_floor_auc:
                    raised.append(
                        str(
                            _alert(
                                spec,
                                alerts,
                                "critical",
                                key,
                                f"live AUC {auc:.3f} of {report.model_version} is below the floor "
                                f"{spec.monitoring.performance_floor_auc:.3f}",
                                "check the performance sensor's retrain run and the data",
                            )
                        )
                    )
        return dg.MaterializeResult(
            metadata={
                "live": dg.MetadataValue.json(summary),
                "alerts": dg.MetadataValue.md("\n".join(raised) or "none"),
            }
        )

    @dg.asset(
        key=drift_key,
        group_name=spec.name,
        deps=[profile_key, live_key, champion_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"whylogs"},
        description="Per-feature drift of the partition against the champion's training window "
        "(Hellinger distance with thresholds calibrated inside that window; KS and "
        "chi-square from whylogs), with the label rate.",
    )
    def drift(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        registry: ModelRegistry,
        profiles: ProfileStore,
        alerts: AlertSink,
    ) -> dg.MaterializeResult:
        found: dict[str, Any] = {}
        raised = []
        with warehouse.connect() as con:
            for key in context.partition_keys:
                report = monitor_steps.drift_step(
                    con, spec, key, registry.for_pipeline(spec.name), profiles.for_pipeline(spec.name)
                )
                if report is None:
                    found[key] = "no champion yet: no reference to compare with"
                    continue
                result = report.result
                found[key] = {
                    "against": report.champion_version,
                    "share": result.share,
                    "drifted": result.drifted,
                    "description": result.describe(),
                    "label_rate": report.label_rate,
                    "reference_label_rate": report.reference_label_rate,
                    "prediction_hellinger": report.prediction_hellinger,
                }
                if result.share is not None and result.share >= spec.monitoring.drift_share:
                    raised.append(
                        str(
                            _alert(
                                spec,
                                alerts,
                                "warning",
                                key,
                                result.describe(),
                                "the drift sensor retrains when drift is confirmed and hurts",
                            )
                        )
                    )
        return dg.MaterializeResult(
            metadata={
                "drift": dg.MetadataValue.json(found),
                "alerts": dg.MetadataValue.md("\n".join(raised) or "none"),
            }
        )

    @dg.asset(
        key=_key(spec, "monitoring_dashboard"),
        group_name=spec.name,
        deps=[live_key, drift_key],
        pool=WAREHOUSE_POOL,
        kinds={"matplotlib"},
        description="Per-segment live AUC and per-feature drift over time, as pictures.",
    )
    def monitoring_dashboard(warehouse: Warehouse) -> dg.MaterializeResult:
        with warehouse.connect() as con:
            live = con.execute(f"SELECT * FROM {spec.name}.live_performance").df()
            columns = con.execute(
                f"SELECT _partition_key AS partition, * EXCLUDE (_partition_key) "
                f"FROM {spec.name}.drift_columns"
            ).df()
        live = live.rename(columns={"_partition_key": "partition_key"})
        return dg.MaterializeResult(
            metadata={
                "segments": dg.MetadataValue.md(
                    report_plots.markdown_image(dashboards.segment_auc_over_time(live), "segment AUC")
                ),
                "drift": dg.MetadataValue.md(
                    report_plots.markdown_image(
                        dashboards.drift_heatmap(columns.dropna(subset=["hellinger"])), "drift heatmap"
                    )
                ),
            }
        )

    retrain_job = dg.define_asset_job(
        f"{spec.name}_retrain",
        executor_def=dg.in_process_executor,
        selection=dg.AssetSelection.assets(*[_key(spec, a) for a in RETRAIN_ASSETS]),
        description="Train a candidate on the latest window, evaluate it and promote it if the gate passes.",
    )
    ingest = [*INGEST_ASSETS, *(group_asset_name(g) for g in groups(spec))]
    ingest_job = dg.define_asset_job(
        f"{spec.name}_ingest",
        executor_def=dg.in_process_executor,
        partitions_def=partitions,
        selection=dg.AssetSelection.assets(*[_key(spec, a) for a in ingest]),
        description="Ingest, validate and featurize a partition; then profile, score it and measure drift.",
    )
    context_job = dg.define_asset_job(
        f"{spec.name}_context",
        executor_def=dg.in_process_executor,
        selection=dg.AssetSelection.assets(*[_key(spec, f"context_{t}") for t in spec.context_tables]),
        description="Load the context tables (reference data, time series) from their landing files.",
    )
    sensors = [
        _retrain_sensor(spec, "drift", drift_decision, retrain_job),
        _retrain_sensor(spec, "performance", performance_decision, retrain_job),
        _landing_sensor(spec, ingest_job, context_job),
    ]
    schedules = []
    if spec.training.retrain_cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{spec.name}_retrain_schedule",
                cron_schedule=spec.training.retrain_cron,
                job=retrain_job,
                execution_timezone=spec.partitions.timezone,
                tags={"ct/trigger": "schedule"},
                default_status=dg.DefaultScheduleStatus.STOPPED,
            )
        )
    return dg.Definitions(
        assets=[profile, live_performance, drift, monitoring_dashboard],
        jobs=[retrain_job, ingest_job, context_job] if spec.context_tables else [retrain_job, ingest_job],
        sensors=sensors,
        schedules=schedules,
    )


def _retrain_sensor(spec: PipelineSpec, cause: str, decide: Any, job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_{cause}_sensor",
        job=job,
        minimum_interval_seconds=30,
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


def evaluate_retrain(
    context: dg.SensorEvaluationContext,
    spec: PipelineSpec,
    cause: str,
    decide: Any,
    warehouse: Warehouse,
    registry: ModelRegistry,
    sink: AlertSink,
    snapshots: SnapshotFolder | None = None,
) -> dg.SensorResult | dg.SkipReason:
    """One tick: read the latest signals, apply the rule, honour the cooldown, request a run.

    With `snapshots`, only partitions whose ingest has finished count (the online snapshot is
    published as of them), so a model is never trained as of a partition that serving cannot
    serve yet."""
    import duckdb

    from ct_assets.lib.data.online_snapshot import published_as_of

    busy = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=f"{spec.name}_retrain", statuses=IN_FLIGHT), limit=1
    )
    if busy:
        return dg.SkipReason(f"retrain run {busy[0].run_id[:8]} is already queued or running")
    store = registry.for_pipeline(spec.name)
    record = store.champion()
    if record is None and cause != "performance":
        return dg.SkipReason("no champion yet: the performance sensor requests the first model")
    complete = published_as_of(snapshots.folder(spec.name)) if snapshots else "9999"
    if complete is None:
        return dg.SkipReason("no partition fully ingested yet (no online snapshot published)")
    rules = spec.monitoring
    try:
        con = open_connection(warehouse.path, read_only=True, retries=12)  # ~15 s between writers
    except duckdb.IOException:
        return dg.SkipReason("the warehouse is being written; trying again next tick")
    if record is None:
        try:
            rows = monitor_steps.feature_partition_rows(con, spec)
        finally:
            con.close()
        return _first_model_request(context, spec, [r for r in rows if r[0] <= complete])
    try:
        signals = monitor_steps.recent_signals(
            con, spec, max(rules.confirm_window, rules.performance_window), record["version"]
        )
        signals = [signal for signal in signals if signal.partition <= complete]
        cursor = json.loads(context.cursor or "{}")
        last = cursor.get("last_request")
        since = monitor_steps.partitions_since(con, spec, last["partition"]) if last else 0
    finally:
        con.close()
    if not signals:
        return dg.SkipReason(f"no monitored partitions for champion {record['version']} yet")
    holdout_auc = (record.get("evaluation") or {}).get("candidate", {}).get("auc")
    decision: Decision = decide(signals, holdout_auc, rules)
    latest = signals[-1].partition
    if not decision.retrain:
        return dg.SkipReason(f"{latest}: {decision.reason}")
    if last and last.get("champion") == record["version"] and since < rules.cooldown_partitions:
        return dg.SkipReason(
            f"{latest}: {decision.reason}; cooling down ({since} of "
            f"{rules.cooldown_partitions} partitions since the request on {last['partition']})"
        )
    _alert(
        spec,
        sink,
        "info",
        latest,
        f"retrain requested by the {cause} sensor: {decision.reason}",
        "watch the retrain run; the gate decides whether the champion changes",
    )
    request = dg.RunRequest(
        run_key=f"{cause}:{latest}:{record['version']}",
        run_config={"ops": {f"{spec.name}__training_set": {"config": {"as_of": latest}}}},
        tags={
            "ct/trigger": cause,
            "ct/reason": decision.reason[:900],
            "ct/partition": latest,
            "ct/champion": record["version"],
        },
    )
    context.update_cursor(
        json.dumps(
            {"last_request": {"partition": latest, "champion": record["version"], "reason": decision.reason}}
        )
    )
    return dg.SensorResult(run_requests=[request])


def _first_model_request(
    context: dg.SensorEvaluationContext, spec: PipelineSpec, rows: list[tuple[str, int]]
) -> dg.SensorResult | dg.SkipReason:
    """No champion yet: request the first training as soon as the data allows, once per partition
    (a refused first candidate is retried when the next partition arrives)."""
    decision = first_model_decision(rows, spec.training)
    if not decision.retrain:
        return dg.SkipReason(decision.reason)
    latest = rows[-1][0]
    request = dg.RunRequest(
        run_key=f"first_model:{latest}",
        run_config={"ops": {f"{spec.name}__training_set": {"config": {"as_of": latest}}}},
        tags={"ct/trigger": "first_model", "ct/reason": decision.reason[:900], "ct/partition": latest},
    )
    return dg.SensorResult(run_requests=[request])


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
LOST_RUN_RETRIES = 2


def _context_fingerprint(spec: PipelineSpec, landing: LandingZone) -> str | None:
    """The context files' hashes, or None while one of them has not landed."""
    from ct_assets.lib.data.landing import LandingError

    try:
        paths = [landing.context_file(spec.name, table) for table in spec.context_tables]
    except LandingError:
        return None
    return ",".join(sha256_of(path)[:16] for path in paths)


def _landing_sensor(spec: PipelineSpec, job: Any, context_job: Any) -> dg.SensorDefinition:
    partitions_def = job.partitions_def
    raw_key = _key(spec, "raw")
    context_keys = [_key(spec, f"context_{t}") for t in spec.context_tables]

    @dg.sensor(
        name=f"{spec.name}_landing_sensor",
        jobs=[job, context_job] if context_keys else [job],
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Loads the context tables when their files land or change, ingests each partition whose "
        f"landing files arrive or change, and asks again (up to {LOST_RUN_RETRIES} times) for a landed "
        "partition whose ingest run was lost or failed.",
    )
    def _sensor(context: dg.SensorEvaluationContext, landing: LandingZone) -> dg.SensorResult | dg.SkipReason:
        cursor = json.loads(context.cursor or "{}")
        seen: dict[str, str] = cursor.get("seen", {})
        retries: dict[str, int] = cursor.get("retries", {})
        requests = []
        if context_keys:
            fingerprint = _context_fingerprint(spec, landing)
            if fingerprint is None:
                return dg.SkipReason("waiting for the context tables' landing files")
            if cursor.get("context") != fingerprint:
                cursor["context"] = fingerprint
                requests.append(
                    dg.RunRequest(
                        job_name=context_job.name,
                        run_key=f"context:{fingerprint}",
                        tags={"ct/trigger": "landing"},
                    )
                )
            loaded = all(context.instance.get_latest_materialization_event(k) for k in context_keys)
            if not loaded:  # features join the context tables: ingest once they are in the warehouse
                return dg.SensorResult(
                    run_requests=requests,
                    cursor=json.dumps(cursor),
                    skip_reason=None if requests else "waiting for the context tables to load",
                )
        busy = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=1
        )
        if busy:  # one ingest run at a time: the days that land meanwhile go together in the next one
            return dg.SensorResult(
                run_requests=requests,
                cursor=json.dumps(cursor),
                skip_reason=None if requests else f"waiting for ingest run {busy[0].run_id[:8]}",
            )
        ordered = partitions_def.get_partition_keys(dynamic_partitions_store=context.instance)
        position = {key: index for index, key in enumerate(ordered)}
        ingested = context.instance.get_materialized_partitions(raw_key)
        pending: list[tuple[str, str]] = []
        for key in sorted(landing.landed_keys(spec.name), key=lambda k: position.get(k, -1)):
            if key not in position:
                continue
            files = landing.partition_files(spec.name, key)
            fingerprint = ",".join(sha256_of(path)[:16] for path in files)
            part = f"{key}:{fingerprint}"
            if seen.get(key) == fingerprint:
                if key in ingested or retries.get(key, 0) >= LOST_RUN_RETRIES:
                    continue
                retries[key] = retries.get(key, 0) + 1
                part += f":retry{retries[key]}"
            seen[key] = fingerprint
            pending.append((key, part))
        for run in _contiguous(pending, position):
            first, last = run[0][0], run[-1][0]
            run_key = run[0][1] if len(run) == 1 else f"{first}...{last}:{_digest([p for _, p in run])}"
            tags = {"ct/trigger": "landing"}
            if len(run) == 1:
                requests.append(
                    dg.RunRequest(job_name=job.name, partition_key=first, run_key=run_key, tags=tags)
                )
            else:
                tags |= {
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                }
                requests.append(dg.RunRequest(job_name=job.name, run_key=run_key, tags=tags))
        if not requests:
            return dg.SkipReason("no new or changed landing files")
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps({**cursor, "seen": seen, "retries": retries}),
        )

    return _sensor


def _contiguous(pending: list[tuple[str, str]], position: dict[str, int]) -> list[list[tuple[str, str]]]:
    """Split (key, run-key part) pairs into runs of consecutive partitions."""
    runs: list[list[tuple[str, str]]] = []
    for item in pending:
        if runs and position[item[0]] == position[runs[-1][-1][0]] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _digest(parts: list[str]) -> str:
    import hashlib

    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
