"""Builds one pipeline's monitoring layer: its assets, the ingest, context and retrain jobs, and the
sensors and schedule that close the loop."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ct_assets.defs.data.common import group_asset_name, partitions_def
from ct_assets.defs.monitor.assets import monitor_assets
from ct_assets.defs.monitor.dashboards import dashboard_sensor
from ct_assets.defs.monitor.sensors import landing_sensor, retrain_sensor
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.features import groups
from ct_assets.lib.monitor.retrain_policy import drift_decision, performance_decision

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


def _selection(spec: PipelineSpec, assets: Sequence[str]) -> dg.AssetSelection:
    return dg.AssetSelection.assets(*[asset_key(spec, a) for a in assets])


def monitor_jobs(spec: PipelineSpec) -> tuple[Any, Any, Any]:
    """The retrain, ingest and context jobs of the pipeline."""
    retrain_job = dg.define_asset_job(
        names.job_name(spec.name, "retrain"),
        executor_def=dg.in_process_executor,
        selection=_selection(spec, names.RETRAIN_ASSETS),
        description="Train a candidate on the latest window, evaluate it and promote it if the gate passes.",
    )
    ingest_job = dg.define_asset_job(
        names.job_name(spec.name, "ingest"),
        executor_def=dg.in_process_executor,
        partitions_def=partitions_def(spec),
        selection=_selection(spec, [*INGEST_ASSETS, *(group_asset_name(g) for g in groups(spec))]),
        description="Ingest, validate and featurize a partition; then profile, score it and measure drift.",
    )
    context_job = dg.define_asset_job(
        names.job_name(spec.name, "context"),
        executor_def=dg.in_process_executor,
        selection=_selection(spec, [names.context_asset(t) for t in spec.context_tables]),
        description="Load the context tables (reference data, time series) from their landing files.",
    )
    return retrain_job, ingest_job, context_job


def build_monitor_defs(spec: PipelineSpec) -> dg.Definitions:
    retrain_job, ingest_job, context_job = monitor_jobs(spec)
    sensors = [
        retrain_sensor(spec, "drift", drift_decision, retrain_job),
        retrain_sensor(spec, "performance", performance_decision, retrain_job),
        landing_sensor(spec, ingest_job, context_job),
        dashboard_sensor(spec),
    ]
    schedules = []
    if spec.training.retrain_cron:
        schedules.append(
            dg.ScheduleDefinition(
                name=names.schedule_name(spec.name, "retrain"),
                cron_schedule=spec.training.retrain_cron,
                job=retrain_job,
                execution_timezone=spec.partitions.timezone,
                tags={"ct/trigger": "schedule"},
                default_status=dg.DefaultScheduleStatus.STOPPED,
            )
        )
    return dg.Definitions(
        assets=monitor_assets(spec),
        jobs=[retrain_job, ingest_job, context_job] if spec.context_tables else [retrain_job, ingest_job],
        sensors=sensors,
        schedules=schedules,
    )
