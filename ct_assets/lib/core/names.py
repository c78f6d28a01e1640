"""The names a pipeline's Dagster objects carry: asset key paths, ops, jobs and sensors.

Every place that names one of them (the wiring, the drivers, the CLI, bench) asks here, so the
names are spelled once.
"""

from __future__ import annotations

from typing import Any

LABEL_GROUP = "label"  # the feature group that holds the label (`ct_assets.lib.data.features`)
RETRAIN_ASSETS = ("training_set", "candidate", "evaluation", "champion")  # what a retrain materializes


def group_asset(group: str) -> str:
    """The asset of a feature group: `labels` for the label group, else `features_<group>`."""
    return "labels" if group == LABEL_GROUP else f"features_{group}"


def context_asset(table: str) -> str:
    """The asset of a context table: `context_<table>`."""
    return f"context_{table}"


def asset_path(pipeline: str, asset: str) -> list[str]:
    """An asset's key path: the pipeline name, then the asset's name."""
    return [pipeline, asset]


def op_name(pipeline: str, asset: str) -> str:
    """The op (node) that materializes an asset: `<pipeline>__<asset>`."""
    return f"{pipeline}__{asset}"


def job_name(pipeline: str, job: str) -> str:
    """A pipeline's job: `<pipeline>_<job>` (ingest, retrain, context, deploy)."""
    return f"{pipeline}_{job}"


def sensor_name(pipeline: str, sensor: str) -> str:
    """A pipeline's sensor: `<pipeline>_<sensor>_sensor` (landing, drift, performance)."""
    return f"{pipeline}_{sensor}_sensor"


def automation_sensor_name(pipeline: str) -> str:
    """The pipeline's automation-condition sensor: `<pipeline>_automation`."""
    return f"{pipeline}_automation"


def schedule_name(pipeline: str, schedule: str) -> str:
    """A pipeline's schedule: `<pipeline>_<schedule>_schedule`."""
    return f"{pipeline}_{schedule}_schedule"


def training_run_config(pipeline: str, as_of: str) -> dict[str, Any]:
    """Run config that trains as of a partition (the `training_set` op's `as_of`)."""
    return {"ops": {op_name(pipeline, "training_set"): {"config": {"as_of": as_of}}}}
