"""A pipeline's feature assets: one per feature group (and the label), with the point-in-time
leakage check, and `features`, the training-ready join of the groups."""

import re
from collections.abc import Iterator

import dagster as dg

from ct_assets.defs.data import catalog
from ct_assets.defs.data.common import (
    INGEST_TAGS,
    each_partition,
    fail_partitions,
    group_asset_name,
    materializations,
    version,
)
from ct_assets.defs.resources import WAREHOUSE_POOL, Warehouse
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import LABEL_GROUP, Group, definition_version, find_leakage, groups


def _context_deps(spec: PipelineSpec, group: Group) -> list[dg.AssetKey]:
    """Context tables the group's SQL names (outside comments)."""
    sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", spec.sql_text(group.sql_path), flags=re.S)
    return [
        asset_key(spec, f"context_{t}")
        for t in spec.context_tables
        if re.search(rf"\b{re.escape(t)}\b", sql, flags=re.I)
    ]


def group_asset(spec: PipelineSpec, group: Group, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = asset_key(spec, group_asset_name(group))
    definition = definition_version(spec, group)
    check_leakage = group.name != LABEL_GROUP and bool(
        spec.post_event_columns or any(t.kind == "time_series" for t in spec.context_tables.values())
    )
    checks = (
        [
            dg.AssetCheckSpec(
                "no_future_information",
                asset=key,
                blocking=True,
                description="features do not change when information from after the event time "
                "(post-event columns, later context rows) is removed",
            )
        ]
        if check_leakage
        else []
    )

    @dg.multi_asset(
        name=names.op_name(spec.name, group_asset_name(group)),
        specs=[
            dg.AssetSpec(
                key,
                deps=[asset_key(spec, "validated"), *_context_deps(spec, group)],
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb", "sql"},
                code_version=definition,
                description=(
                    f"Label `{spec.label.column}`: "
                    if group.name == LABEL_GROUP
                    else f"Feature group `{group.name}`: "
                )
                + group.description
                + f" (SQL: `{group.sql_path}`, definition {definition})",
                freshness_policy=catalog.freshness(spec, "features"),
                metadata={
                    "dagster/column_schema": catalog.group_schema(spec, group),
                    "dagster/table_name": f"{spec.name}.{group.table}",
                    "definition_version": definition,
                    "sql": dg.MetadataValue.md(f"```sql\n{spec.sql_text(group.sql_path)}\n```"),
                },
            )
        ],
        check_specs=checks,
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def _group(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
        leaks: dict[str, list[str]] = {}
        with warehouse.connect() as con:

            def build(partition_key: str) -> data_steps.GroupReport:
                report = data_steps.materialize_group(con, spec, group, partition_key)
                if check_leakage:
                    found = find_leakage(con, spec, group, partition_key)
                    if found:
                        leaks[partition_key] = found
                return report

            reports, failed = each_partition(context, build)
        yield from materializations(
            context,
            key,
            {k: {"dagster/row_count": r.rows, "definition_version": definition} for k, r in reports.items()},
            complete=not failed,
        )
        if check_leakage:
            yield dg.AssetCheckResult(
                check_name="no_future_information",
                asset_key=key,
                passed=not leaks,
                description="no feature uses information from after the event time"
                if not leaks
                else "features use information from after the event time: "
                + "; ".join(f"{k}: {cols}" for k, cols in leaks.items()),
                metadata={"leaking_columns": dg.MetadataValue.json(leaks)},
            )
        fail_partitions(f"{spec.name}/{group_asset_name(group)}", failed, len(reports))

    return _group


def features_asset(spec: PipelineSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = asset_key(spec, "features")
    group_keys = [asset_key(spec, group_asset_name(g)) for g in groups(spec)]

    @dg.multi_asset(
        name=names.op_name(spec.name, "features"),
        specs=[
            dg.AssetSpec(
                key,
                deps=group_keys,
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb"},
                description="Training-ready rows: entity id, event time, segments, every feature "
                "group's columns and the label.",
                code_version=version(spec.segments, spec.label.column, [g.name for g in groups(spec)]),
                freshness_policy=catalog.freshness(spec, "features"),
                metadata={
                    "dagster/column_schema": catalog.features_schema(spec),
                    "dagster/table_name": f"{spec.name}.features",
                },
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "one_row_per_validated_row",
                asset=key,
                blocking=True,
                description="every validated row has exactly one feature row",
            )
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def _features(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
        with warehouse.connect() as con:
            reports, failed = each_partition(
                context, lambda partition_key: data_steps.build_features(con, spec, partition_key)
            )
        yield from materializations(
            context,
            key,
            {k: {"dagster/row_count": r.rows, "label_rate": r.label_rate or 0.0} for k, r in reports.items()},
            complete=not failed,
        )
        mismatched = {k: (r.rows, r.validated_rows) for k, r in reports.items() if r.rows != r.validated_rows}
        yield dg.AssetCheckResult(
            check_name="one_row_per_validated_row",
            asset_key=key,
            passed=not mismatched,
            description="feature rows match validated rows"
            if not mismatched
            else "feature rows differ from validated rows: "
            + ", ".join(f"{k}: {f} vs {v}" for k, (f, v) in mismatched.items()),
        )
        fail_partitions(f"{spec.name}/features", failed, len(reports))

    return _features
