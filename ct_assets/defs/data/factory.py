"""Builds one pipeline's data-layer assets from its spec: the engine's only view of a dataset.

Asset keys are prefixed by the pipeline name and grouped under it, so every spec yields its own
independent asset group. Partitioned assets take a single run for a range of partitions (so a
command-line backfill is one run), and process the range partition by partition.
"""

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ct_assets.defs.data import catalog
from ct_assets.defs.resources import WAREHOUSE_POOL, LandingZone, Warehouse
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import LABEL_GROUP, Group, definition_version, find_leakage, groups
from ct_assets.lib.data.quality import MIN_HISTORY

ENGINE_VERSION = "1"
# Every partitioned asset of a pipeline carries this tag, so one selection backfills them all:
# --select 'tag:ct/stage=ingest and group:<pipeline>'
INGEST_TAGS = {"ct/stage": "ingest"}
WARN = dg.AssetCheckSeverity.WARN


def partitions_def(spec: PipelineSpec) -> dg.TimeWindowPartitionsDefinition:
    p = spec.partitions
    kwargs: dict[str, Any] = {"start_date": p.start.isoformat(), "timezone": p.timezone}
    if p.end is not None:
        kwargs["end_date"] = p.end.isoformat()
    kind = {
        "daily": dg.DailyPartitionsDefinition,
        "weekly": dg.WeeklyPartitionsDefinition,
        "monthly": dg.MonthlyPartitionsDefinition,
    }[p.grain]
    return kind(**kwargs)


def _version(*parts: Any) -> str:
    payload = json.dumps([ENGINE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _key(spec: PipelineSpec, name: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, name])


def group_asset_name(group: Group) -> str:
    return "labels" if group.name == LABEL_GROUP else f"features_{group.name}"


def _summary(rows: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    """Metadata for a run: the totals, plus a per-partition table when the run covers several."""
    metadata: dict[str, Any] = dict(totals)
    if len(rows) == 1:
        metadata.update({k: v for k, v in rows[0].items() if k not in metadata})
    metadata["partitions"] = catalog.partition_table(rows)
    return metadata


def context_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    built = []
    for table, table_spec in spec.context_tables.items():
        built.append(_context_asset(spec, table, table_spec.description))
    return built


def _context_asset(spec: PipelineSpec, table: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=_key(spec, f"context_{table}"),
        group_name=spec.name,
        description=f"Context table `{table}`: {description}",
        kinds={"duckdb"},
        pool=WAREHOUSE_POOL,
        code_version=_version(spec.context_tables[table].model_dump()),
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
    key = _key(spec, "raw")

    @dg.multi_asset(
        name=f"{spec.name}__raw",
        specs=[
            dg.AssetSpec(
                key,
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb"},
                description=f"Rows of each landing file of {spec.name}, typed, with provenance "
                "(file, sha256, ingested_at). Rematerializing replaces the partition.",
                code_version=_version(spec.columns, spec.source.model_dump()),
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
    ) -> Iterator[dg.MaterializeResult]:
        rows, total = [], 0
        with warehouse.connect() as con:
            for partition_key in context.partition_keys:
                files = landing.partition_files(spec.name, partition_key)
                report = data_steps.ingest_raw(con, spec, partition_key, files)
                context.log.info(
                    f"{spec.name} {partition_key}: {report.rows} rows from {[f.path for f in report.files]}"
                )
                total += report.rows
                rows.append(
                    {
                        "partition": partition_key,
                        "rows": report.rows,
                        "malformed_lines": report.malformed_lines,
                        "source_files": ", ".join(f.path for f in report.files),
                        "source_sha256": ", ".join(f.sha256 for f in report.files),
                        "event_start": report.event_start or "",
                        "event_end": report.event_end or "",
                        "arrival_lag_hours": report.arrival_lag_hours or 0.0,
                    }
                )
        yield dg.MaterializeResult(asset_key=key, metadata=_summary(rows, {"dagster/row_count": total}))

    return _raw


def validated_asset(spec: PipelineSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key, quarantine_key, raw_key = (
        _key(spec, "validated"),
        _key(spec, "quarantine"),
        _key(spec, "raw"),
    )
    threshold = spec.quality.max_quarantine_rate

    @dg.multi_asset(
        name=f"{spec.name}__validated",
        specs=[
            dg.AssetSpec(
                key,
                deps=[raw_key],
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb", "pandera"},
                description="Rows that pass the spec's pandera model (types, nulls, ranges, "
                "allowed values, unique ids, event time inside the partition).",
                code_version=_version(spec.columns, spec.entity_id, spec.timestamp_column),
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
                code_version=_version(spec.columns, spec.entity_id, spec.timestamp_column),
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
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        reports: dict[str, data_steps.ValidationReport] = {}
        with warehouse.connect() as con:
            for partition_key in context.partition_keys:
                reports[partition_key] = data_steps.validate_partition(con, spec, partition_key)
        rows = [
            {
                "partition": k,
                "rows_in": r.rows_in,
                "valid": r.rows_valid,
                "quarantined": r.rows_quarantined,
                "quarantine_rate": r.quarantine_rate,
                "outliers": sum(r.outliers.values()),
            }
            for k, r in reports.items()
        ]
        valid = sum(r.rows_valid for r in reports.values())
        quarantined = sum(r.rows_quarantined for r in reports.values())
        reasons: dict[str, int] = {}
        for report in reports.values():
            for reason, count in report.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_summary(
                rows,
                {
                    "dagster/row_count": valid,
                    "rows_quarantined": quarantined,
                    "null_rates": dg.MetadataValue.json({k: r.null_rates for k, r in reports.items()}),
                },
            ),
        )
        yield dg.MaterializeResult(
            asset_key=quarantine_key,
            metadata={
                "dagster/row_count": quarantined,
                "reasons": dg.MetadataValue.json(reasons),
            },
        )
        yield from _validation_checks(spec, key, reports)

    return _validated


def _validation_checks(
    spec: PipelineSpec, key: dg.AssetKey, reports: dict[str, data_steps.ValidationReport]
) -> Iterator[dg.AssetCheckResult]:
    unconserved = {k: r for k, r in reports.items() if not r.conserved}
    yield dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key=key,
        passed=not unconserved,
        description="every row is either valid or quarantined"
        if not unconserved
        else "rows lost in "
        + ", ".join(
            f"{k} (in {r.rows_in}, valid {r.rows_in_validated_table}, quarantined "
            f"{r.rows_in_quarantine_table})"
            for k, r in unconserved.items()
        ),
        metadata={
            "rows_in": sum(r.rows_in for r in reports.values()),
            "rows_valid": sum(r.rows_in_validated_table for r in reports.values()),
            "rows_quarantined": sum(r.rows_in_quarantine_table for r in reports.values()),
        },
    )
    threshold = spec.quality.max_quarantine_rate
    over = {k: r.quarantine_rate for k, r in reports.items() if r.quarantine_rate > threshold}
    worst = max((r.quarantine_rate for r in reports.values()), default=0.0)
    yield dg.AssetCheckResult(
        check_name="quarantine_rate",
        asset_key=key,
        passed=not over,
        description=(
            f"quarantine rate at most {worst:.2%} (limit {threshold:.2%})"
            if not over
            else "quarantine rate over the limit of "
            + f"{threshold:.2%}: "
            + ", ".join(f"{k} {rate:.2%}" for k, rate in over.items())
        ),
        metadata={"max_quarantine_rate": worst, "limit": threshold},
    )
    limit = spec.quality.max_outlier_rate
    flagged: dict[str, dict[str, int]] = {}
    for partition_key, report in reports.items():
        for column, count in report.outliers.items():
            if report.rows_valid and count / report.rows_valid > limit:
                flagged.setdefault(partition_key, {})[column] = count
    history = min((r.outlier_history for r in reports.values()), default=0)
    yield dg.AssetCheckResult(
        check_name="outliers",
        asset_key=key,
        passed=not flagged,
        severity=WARN,
        description=(
            f"only {history} earlier partition(s): too few to learn bounds from"
            if history < MIN_HISTORY and not flagged
            else "outlier rates within limits"
            if not flagged
            else "outliers above "
            + f"{limit:.1%}: "
            + "; ".join(f"{k}: {cols}" for k, cols in flagged.items())
        ),
        metadata={
            "history_partitions": history,
            "outliers": dg.MetadataValue.json({k: r.outliers for k, r in reports.items()}),
        },
    )


def _context_deps(spec: PipelineSpec, group: Group) -> list[dg.AssetKey]:
    """Context tables the group's SQL names (outside comments)."""
    sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", spec.sql_text(group.sql_path), flags=re.S)
    return [
        _key(spec, f"context_{t}")
        for t in spec.context_tables
        if re.search(rf"\b{re.escape(t)}\b", sql, flags=re.I)
    ]


def group_asset(spec: PipelineSpec, group: Group, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = _key(spec, group_asset_name(group))
    version = definition_version(spec, group)
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
        name=f"{spec.name}__{group_asset_name(group)}",
        specs=[
            dg.AssetSpec(
                key,
                deps=[_key(spec, "validated"), *_context_deps(spec, group)],
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb", "sql"},
                code_version=version,
                description=(
                    f"Label `{spec.label.column}`: "
                    if group.name == LABEL_GROUP
                    else f"Feature group `{group.name}`: "
                )
                + group.description
                + f" (SQL: `{group.sql_path}`, definition {version})",
                freshness_policy=catalog.freshness(spec, "features"),
                metadata={
                    "dagster/column_schema": catalog.group_schema(spec, group),
                    "dagster/table_name": f"{spec.name}.{group.table}",
                    "definition_version": version,
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
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        rows, leaks = [], {}
        with warehouse.connect() as con:
            for partition_key in context.partition_keys:
                report = data_steps.materialize_group(con, spec, group, partition_key)
                rows.append({"partition": partition_key, "rows": report.rows})
                if check_leakage:
                    found = find_leakage(con, spec, group, partition_key)
                    if found:
                        leaks[partition_key] = found
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_summary(
                rows,
                {
                    "dagster/row_count": sum(r["rows"] for r in rows),
                    "definition_version": version,
                },
            ),
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

    return _group


def features_asset(spec: PipelineSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = _key(spec, "features")
    group_keys = [_key(spec, group_asset_name(g)) for g in groups(spec)]

    @dg.multi_asset(
        name=f"{spec.name}__features",
        specs=[
            dg.AssetSpec(
                key,
                deps=group_keys,
                group_name=spec.name,
                tags=INGEST_TAGS,
                kinds={"duckdb"},
                description="Training-ready rows: entity id, event time, segments, every feature "
                "group's columns and the label.",
                code_version=_version(spec.segments, spec.label.column, [g.name for g in groups(spec)]),
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
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        reports = {}
        with warehouse.connect() as con:
            for partition_key in context.partition_keys:
                reports[partition_key] = data_steps.build_features(con, spec, partition_key)
        rows = [
            {"partition": k, "rows": r.rows, "label_rate": r.label_rate or 0.0} for k, r in reports.items()
        ]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=_summary(rows, {"dagster/row_count": sum(r.rows for r in reports.values())}),
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

    return _features


def build_data_defs(spec: PipelineSpec) -> dg.Definitions:
    """All data-layer assets of one pipeline."""
    partitions = partitions_def(spec)
    assets = [
        *context_assets(spec),
        raw_asset(spec, partitions),
        validated_asset(spec, partitions),
        *(group_asset(spec, group, partitions) for group in groups(spec)),
        features_asset(spec, partitions),
    ]
    return dg.Definitions(assets=assets)
