"""A pipeline's ingest assets: the context tables, `raw` (typed rows of the landing files with
provenance) and `validated` with its `quarantine`."""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from ct_assets.defs.data import catalog
from ct_assets.defs.data.checks import validation_checks
from ct_assets.defs.data.common import (
    INGEST_TAGS,
    each_partition,
    fail_partitions,
    materializations,
    version,
)
from ct_assets.defs.resources import WAREHOUSE_POOL, LandingZone, Warehouse
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import steps as data_steps


def context_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    built = []
    for table, table_spec in spec.context_tables.items():
        built.append(_context_asset(spec, table, table_spec.description))
    return built


def _context_asset(spec: PipelineSpec, table: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, f"context_{table}"),
        group_name=spec.name,
        description=f"Context table `{table}`: {description}",
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        code_version=version(spec.context_tables[table].model_dump()),
        metadata={
            "dagster/column_schema": catalog.context_schema(spec, table),
            "dagster/table_name": f"{spec.name}.context_{table}",
        },
    )
    def _context(warehouse: Warehouse, landing: LandingZone) -> dg.MaterializeResult:
        path = landing.context_file(spec.name, table)
        with warehouse.connect() as con:
            report = data_steps.load_context(con, spec, table, path)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": report.rows,
                "unparsed_rows": report.unparsed_rows,
                "source_file": dg.MetadataValue.path(report.file.path),
                "source_sha256": report.file.sha256,
            }
        )

    return _context


def raw_asset(spec: PipelineSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = asset_key(spec, "raw")

    @dg.multi_asset(
        name=names.op_name(spec.name, "raw"),
        specs=[
            dg.AssetSpec(
                key,
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb"},
                description=f"Rows of each landing file of {spec.name}, typed, with provenance "
                "(file, sha256, ingested_at). Rematerializing replaces the partition.",
                code_version=version(spec.columns, spec.source.model_dump()),
                freshness_policy=catalog.freshness(spec, "raw"),
                metadata={
                    "dagster/column_schema": catalog.raw_schema(spec),
                    "dagster/table_name": f"{spec.name}.raw",
                },
            )
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def _raw(
        context: dg.AssetExecutionContext, warehouse: Warehouse, landing: LandingZone
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
        with warehouse.connect() as con:

            def ingest(partition_key: str) -> data_steps.RawReport:
                files = landing.partition_files(spec.name, partition_key)
                return data_steps.ingest_raw(con, spec, partition_key, files)

            reports, failed = each_partition(context, ingest)
        context.log.info(
            f"{spec.name}: {sum(r.rows for r in reports.values())} rows from "
            f"{sum(len(r.files) for r in reports.values())} file(s) in {len(reports)} partition(s)"
        )
        per_partition = {k: _raw_metadata(r) for k, r in reports.items()}
        yield from materializations(context, key, per_partition, complete=not failed)
        fail_partitions(f"{spec.name}/raw", failed, len(reports))

    return _raw


def _raw_metadata(report: data_steps.RawReport) -> dict[str, Any]:
    return {
        "dagster/row_count": report.rows,
        "malformed_lines": report.malformed_lines,
        "source_files": ", ".join(f.path for f in report.files),
        "source_sha256": ", ".join(f.sha256 for f in report.files),
        "event_start": report.event_start or "",
        "event_end": report.event_end or "",
        "arrival_lag_hours": report.arrival_lag_hours or 0.0,
    }


def validated_asset(spec: PipelineSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key, quarantine_key, raw_key = (
        asset_key(spec, "validated"),
        asset_key(spec, "quarantine"),
        asset_key(spec, "raw"),
    )
    threshold = spec.quality.max_quarantine_rate

    @dg.multi_asset(
        name=names.op_name(spec.name, "validated"),
        specs=[
            dg.AssetSpec(
                key,
                deps=[raw_key],
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb", "pandera"},
                description="Rows that pass the spec's pandera model (types, nulls, ranges, "
                "allowed values, unique ids, event time inside the partition).",
                code_version=version(spec.columns, spec.entity_id, spec.timestamp_column),
                freshness_policy=catalog.freshness(spec, "validated"),
                metadata={
                    "dagster/column_schema": catalog.validated_schema(spec),
                    "dagster/table_name": f"{spec.name}.validated",
                },
            ),
            dg.AssetSpec(
                quarantine_key,
                deps=[raw_key],
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb"},
                description="Every row that failed validation, with the file, record number, "
                "the row's values and a readable reason. Nothing is dropped.",
                code_version=version(spec.columns, spec.entity_id, spec.timestamp_column),
                metadata={
                    "dagster/column_schema": catalog.quarantine_schema(),
                    "dagster/table_name": f"{spec.name}.quarantine",
                },
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "rows_conserved",
                asset=key,
                blocking=True,
                description="rows in = rows valid + rows quarantined",
            ),
            dg.AssetCheckSpec(
                "quarantine_rate",
                asset=key,
                blocking=True,
                description=f"quarantined share of rows <= {threshold:.1%}",
            ),
            dg.AssetCheckSpec(
                "outliers",
                asset=key,
                description="numeric values outside robust bounds learned from earlier partitions (warning)",
            ),
        ],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def _validated(
        context: dg.AssetExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckResult]:
        with warehouse.connect() as con:
            reports, failed = each_partition(
                context, lambda partition_key: data_steps.validate_partition(con, spec, partition_key)
            )
        valid = {
            k: {
                "dagster/row_count": r.rows_valid,
                "rows_in": r.rows_in,
                "rows_quarantined": r.rows_quarantined,
                "quarantine_rate": r.quarantine_rate,
                "outliers": sum(r.outliers.values()),
                "null_rates": dg.MetadataValue.json(r.null_rates),
            }
            for k, r in reports.items()
        }
        quarantined = {
            k: {"dagster/row_count": r.rows_quarantined, "reasons": dg.MetadataValue.json(r.reasons)}
            for k, r in reports.items()
        }
        yield from materializations(context, key, valid, complete=not failed)
        yield from materializations(context, quarantine_key, quarantined, complete=not failed)
        yield from validation_checks(spec, key, reports)
        fail_partitions(f"{spec.name}/validated", failed, len(reports))

    return _validated
