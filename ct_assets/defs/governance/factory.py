"""Governance in the UI: the audit log as observations on the assets it concerns, the retention asset
with its daily schedule, and the audit chain check on the deployment.

Why observations: an operator looking at `flights_delay/champion` or `flights_delay/deployment`
wants the who/what/why next to the asset's materializations, in its event timeline, not in a
separate table to cross-reference. `audit_log_sensor` turns each new entry of the hash-chained log
into a `dg.AssetObservation` on its subject asset (champion, deployment, raw, predictions) with
who, action, why, seq, hash and the details as metadata; it is cheap (one file read, cursor = the
last seq and hash seen) and idempotent, so it runs by default.
"""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.defs.resources import (
    WAREHOUSE_POOL,
    HomeFolder,
    LandingZone,
    ModelRegistry,
    PredictionLog,
    Warehouse,
)
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.governance import chain_check, retention
from ct_assets.lib.serving import steps as deploy_steps

# The per-pipeline assets an audit entry's subject can name.
SUBJECTS = ("champion", "deployment", "raw", "predictions", "retention")
MAX_ENTRIES_PER_TICK = 500


def observation(entry: dict[str, Any], known: set[dg.AssetKey]) -> dg.AssetObservation | None:
    """The observation an audit entry becomes (None when its subject is not an asset here)."""
    subject = entry.get("subject")
    if not subject:
        return None
    key = dg.AssetKey(subject.split("/"))
    if key not in known:
        return None
    return dg.AssetObservation(
        asset_key=key,
        description=f"{entry['action']} by {entry['who']}: {entry['why']}",
        metadata={
            "action": entry["action"],
            "who": entry["who"],
            "why": entry["why"],
            "at": entry["at"],
            "component": entry.get("component") or "",
            "audit_seq": entry["seq"],
            "audit_hash": entry["hash"],
            "details": dg.MetadataValue.json(entry.get("details") or {}),
        },
    )


def _cursor(value: str | None) -> tuple[int, str | None]:
    if not value:
        return 0, None
    data = json.loads(value)
    return int(data["seq"]), data.get("hash")


def audit_log_sensor(specs: list[PipelineSpec]) -> dg.SensorDefinition:
    known = {dg.AssetKey(names.asset_path(s.name, subject)) for s in specs for subject in SUBJECTS}

    @dg.sensor(
        name="audit_log_sensor",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Shows each new audit-log entry (promotion, rollout, rollback, approval, retention, "
        "operator request) as an observation on the asset it concerns, with who, what and why.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, registry: ModelRegistry
    ) -> dg.SensorResult | dg.SkipReason:
        log = registry.audit_log()
        seq, seen_hash = _cursor(context.cursor)
        entries = log.entries(after_seq=max(0, seq - 1))
        if seq and (not entries or entries[0]["seq"] != seq or entries[0]["hash"] != seen_hash):
            context.log.warning(
                f"{log.path} no longer holds entry {seq} as seen: reading it again from the start"
            )
            entries = log.entries()
        elif seq:
            entries = entries[1:]
        entries = entries[:MAX_ENTRIES_PER_TICK]
        if not entries:
            return dg.SkipReason(f"no new entries in {log.path}")
        events = [o for o in (observation(e, known) for e in entries) if o is not None]
        last = entries[-1]
        return dg.SensorResult(
            asset_events=events, cursor=json.dumps({"seq": last["seq"], "hash": last["hash"]})
        )

    return _sensor


def build_governance_defs(spec: PipelineSpec) -> dg.Definitions:
    name = spec.name
    deployment_key = dg.AssetKey(names.asset_path(name, "deployment"))
    rules = spec.retention

    @dg.asset(
        key=names.asset_path(name, "retention"),
        group_name=name,
        deps=[dg.AssetKey(names.asset_path(name, "raw"))],
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        description=f"Deletes landing files and raw/quarantine rows of partitions older than "
        f"{rules.raw_days} days (from {rules.measure_from}) and prediction logs older than "
        f"{rules.prediction_log_days} days; keeps what the champion, the serving model and their "
        "rollback targets were trained on. Every deletion is in the audit log.",
    )
    def retention_asset(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        landing: LandingZone,
        registry: ModelRegistry,
        prediction_log: PredictionLog,
        home: HomeFolder,
    ) -> dg.MaterializeResult:
        store = registry.for_pipeline(name)
        with warehouse.connect() as con:
            report = retention.run_retention(
                spec,
                con,
                Path(landing.root),
                Path(prediction_log.root),
                store,
                deploy_steps.deployment(spec, home.config()).state(),
                store.audit(),
                who=f"dagster run {context.run_id}",
            )
        return dg.MaterializeResult(
            metadata={
                "raw_cutoff": report.raw_cutoff,
                "prediction_log_cutoff": report.log_cutoff,
                "deleted_partitions": dg.MetadataValue.json(report.deleted_partitions),
                "kept": dg.MetadataValue.json(report.kept),
                "rows_deleted": dg.MetadataValue.json(report.rows_deleted),
                "files_deleted": len(report.files_deleted),
                "prediction_log_files_deleted": report.log_files_deleted,
            }
        )

    @dg.asset_check(
        asset=deployment_key,
        name="audit_chain",
        blocking=False,
        pool=WAREHOUSE_POOL,
        description="Walks the serving bento -> model -> training set -> partitions -> raw files, "
        "recomputing every hash, and verifies the audit log's own hash chain.",
    )
    def audit_chain(warehouse: Warehouse, registry: ModelRegistry, home: HomeFolder) -> dg.AssetCheckResult:
        config = home.config()
        store = registry.for_pipeline(name)
        with warehouse.connect() as con:
            result = chain_check.check_chain(
                name,
                deploy_steps.deployment(spec, config).state(),
                store,
                store.audit(),
                con,
                bentoml_home=config.bentoml_home,
            )
        return dg.AssetCheckResult(
            passed=result.ok,
            description="; ".join(result.problems) or "chain intact: every hash matches",
            metadata={
                "bento": result.bento or "",
                "model_version": result.model_version or "",
                "broken_links": len(result.problems),
                "links": dg.MetadataValue.json([link.__dict__ for link in result.links]),
            },
        )

    retention_job = dg.define_asset_job(
        names.job_name(name, "retention_job"), selection=[retention_asset.key]
    )
    chain_job = dg.define_asset_job(
        names.job_name(name, "audit_chain_job"), selection=dg.AssetSelection.checks(audit_chain)
    )
    return dg.Definitions(
        assets=[retention_asset],
        asset_checks=[audit_chain],
        jobs=[retention_job, chain_job],
        schedules=[
            dg.ScheduleDefinition(
                name=names.schedule_name(name, "retention"),
                job=retention_job,
                cron_schedule="30 3 * * *",
                execution_timezone=spec.partitions.timezone,
                default_status=dg.DefaultScheduleStatus.STOPPED,
            ),
            dg.ScheduleDefinition(
                name=names.schedule_name(name, "audit_chain"),
                job=chain_job,
                cron_schedule="0 4 * * *",
                execution_timezone=spec.partitions.timezone,
                default_status=dg.DefaultScheduleStatus.STOPPED,
            ),
        ],
    )
