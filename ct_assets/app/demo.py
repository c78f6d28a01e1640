"""The demo: real 2013 flights landed day by day and run through the real asset graph.

Runs go to the persistent Dagster instance under the home folder, so the UI started afterwards
shows every materialization, check and metadata entry of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from ct_assets.app import code_location
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import demo_source
from ct_assets.lib.data.features import groups


@dataclass(frozen=True)
class PartitionCounts:
    partition: str
    rows: int
    valid: int
    quarantined: int
    features: int
    succeeded: bool


def land_days(spec: PipelineSpec, days: list[str], landing_root: Path) -> list[Path]:
    """Write the demo's landing files for `days` (and the context tables) like a user's files,
    under `landing_root` (`Config.landing`)."""
    if spec.source.kind != "demo":
        raise ValueError(f"pipeline {spec.name} reads its own files; only demo sources can be landed")
    root = landing_root
    demo_source.land_context(root, spec.name, list(spec.context_tables))
    return [demo_source.land_day(root, spec.name, day) for day in days]


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _metadata_value(result: dg.ExecuteInProcessResult, node: str, name: str) -> int:
    for materialization in result.asset_materializations_for_node(node):
        value = materialization.metadata.get(name)
        if value is not None:
            return int(value.value)  # type: ignore[arg-type]
    return 0


def data_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    """The pipeline's data layer from the code location: context tables, raw, validated and
    quarantine, the feature groups and features."""

    layer = {"raw", "validated", "quarantine", "features", *map(names.context_asset, spec.context_tables)}
    layer |= {names.group_asset(g.name) for g in groups(spec)}
    return code_location.pipeline_assets(spec.name, frozenset(layer))


def materialize_context(spec: PipelineSpec, instance: dg.DagsterInstance) -> None:
    context = [a for a in data_assets(spec) if a.partitions_def is None]
    if context:
        dg.materialize(context, instance=instance, resources=code_location.resources(), run_config=QUIET)


def materialize_partition(
    spec: PipelineSpec, partition_key: str, instance: dg.DagsterInstance
) -> PartitionCounts:
    """Run raw -> validated -> feature groups -> features for one partition."""
    assets = data_assets(spec)
    partitioned = [a for a in assets if a.partitions_def is not None]
    upstream = [a for a in assets if a.partitions_def is None]
    result = dg.materialize(
        [*partitioned, *upstream],
        instance=instance,
        partition_key=partition_key,
        resources=code_location.resources(),
        raise_on_error=False,
        run_config=QUIET,
        selection=[key for a in partitioned for key in a.keys],
    )
    name = spec.name
    return PartitionCounts(
        partition=partition_key,
        rows=_metadata_value(result, names.op_name(name, "raw"), "dagster/row_count"),
        valid=_metadata_value(result, names.op_name(name, "validated"), "dagster/row_count"),
        quarantined=_metadata_value(result, names.op_name(name, "validated"), "rows_quarantined"),
        features=_metadata_value(result, names.op_name(name, "features"), "dagster/row_count"),
        succeeded=result.success,
    )
