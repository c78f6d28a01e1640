"""What the Dagster UI shows about the data layer's tables: column schemas and partition summaries."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ct_assets.lib.core.spec import ColumnSpec, PipelineSpec
from ct_assets.lib.data.features import Group

PROVENANCE = [
    dg.TableColumn("_partition_key", "string", description="Partition the row belongs to"),
    dg.TableColumn("_source_file", "string", description="Landing file the row came from"),
    dg.TableColumn("_source_sha256", "string", description="SHA-256 of that file"),
    dg.TableColumn("_row_number", "integer", description="Record number in that file"),
    dg.TableColumn("_ingested_at", "timestamp", description="When the file was ingested"),
]


def _column(name: str, column: ColumnSpec) -> dg.TableColumn:
    rules = []
    if column.min is not None:
        rules.append(f">= {column.min:g}")
    if column.max is not None:
        rules.append(f"<= {column.max:g}")
    if column.allowed is not None:
        rules.append(f"in {column.allowed}")
    return dg.TableColumn(
        name,
        column.type,
        description=column.description or None,
        constraints=dg.TableColumnConstraints(nullable=column.nullable, other=rules),
    )


def raw_schema(spec: PipelineSpec) -> dg.TableSchema:
    cast = dg.TableColumn(
        "_cast_errors", "json", description="Values that did not parse as their type, kept as text"
    )
    return dg.TableSchema([*PROVENANCE, cast, *(_column(n, c) for n, c in spec.columns.items())])


def validated_schema(spec: PipelineSpec) -> dg.TableSchema:
    return dg.TableSchema([*PROVENANCE, *(_column(n, c) for n, c in spec.columns.items())])


def quarantine_schema() -> dg.TableSchema:
    return dg.TableSchema(
        [
            dg.TableColumn("_partition_key", "string"),
            dg.TableColumn("_source_file", "string", description="Landing file of the row"),
            dg.TableColumn("_source_sha256", "string"),
            dg.TableColumn("_row_number", "integer", description="Record number in that file"),
            dg.TableColumn("entity_id", "string"),
            dg.TableColumn("reason", "string", description="Every rule the row breaks, readable"),
            dg.TableColumn("row_values", "json", description="The row as parsed"),
            dg.TableColumn("unparsed_values", "json", description="Values that did not parse, as text"),
            dg.TableColumn("quarantined_at", "timestamp"),
        ]
    )


def context_schema(spec: PipelineSpec, table: str) -> dg.TableSchema:
    return dg.TableSchema([_column(n, c) for n, c in spec.context_tables[table].columns.items()])


def group_schema(spec: PipelineSpec, group: Group) -> dg.TableSchema:
    return dg.TableSchema(
        [
            dg.TableColumn(spec.entity_id, "string", description="Entity id"),
            *(
                dg.TableColumn(name, kind, description=_feature_description(spec, name))
                for name, kind in group.columns.items()
            ),
            dg.TableColumn("_definition_version", "string", description="Hash of the group's SQL"),
        ]
    )


def features_schema(spec: PipelineSpec) -> dg.TableSchema:
    features = set(spec.feature_columns)
    columns = [
        dg.TableColumn(spec.entity_id, "string", description="Entity id"),
        dg.TableColumn(spec.timestamp_column, "timestamp", description="Event time"),
        *(_column(s, spec.columns[s]) for s in spec.segments if s not in features),
    ]
    for group in spec.feature_groups.values():
        columns += [
            dg.TableColumn(n, c.kind, description=c.description or None) for n, c in group.columns.items()
        ]
    columns.append(dg.TableColumn(spec.label.column, "label", description=spec.label.description))
    return dg.TableSchema(columns)


def _feature_description(spec: PipelineSpec, name: str) -> str | None:
    if name == spec.label.column:
        return spec.label.description or None
    for group in spec.feature_groups.values():
        if name in group.columns:
            return group.columns[name].description or None
    return None


def freshness(spec: PipelineSpec, layer: str) -> dg.FreshnessPolicy | None:
    window = spec.freshness.get(layer)  # type: ignore[call-overload]
    if window is None:
        return None
    warn = timedelta(hours=window.warn_after_hours)
    fail = timedelta(hours=window.fail_after_hours)
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn if warn < fail else None)
