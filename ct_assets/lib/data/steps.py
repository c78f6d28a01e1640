"""The data layer's steps, one function per asset: raw, validated, context, feature groups, features.

Each step reads and writes the warehouse through a DuckDB connection it is given, writes each
partition in one transaction (replace, never append), and returns a report of what it did.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.partitions import partition_window, previous_keys
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import (
    PARTITION_COLUMN,
    key_literal,
    quote,
    replace_partition,
    table_exists,
    table_name,
    transaction,
)
from ct_assets.lib.data.csv_format import CsvFormat
from ct_assets.lib.data.features import (
    FeatureDefinitionError,
    Group,
    bind_partition,
    check_group_columns,
    check_group_rows,
    definition_version,
    describe_group,
    duckdb_reason,
    feature_table_sql,
)
from ct_assets.lib.data.ingest import PROVENANCE_COLUMNS, FileReport, stage_file, stage_partition
from ct_assets.lib.data.quality import ColumnStats, column_stats, count_outliers, robust_bounds
from ct_assets.lib.data.validation import find_bad_rows

if TYPE_CHECKING:
    import duckdb


_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\w.:+\-]*")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM ({sql})").fetchall()[0][0])


@dataclass(frozen=True)
class RawReport:
    rows: int
    files: list[FileReport]
    malformed_lines: int
    event_start: str | None
    event_end: str | None
    arrival_lag_hours: float | None
    ingested_at: str


def csv_layout(spec: PipelineSpec) -> CsvFormat:
    """The separator and encoding the spec declares for its CSV landing files."""
    return CsvFormat(delimiter=spec.source.delimiter, encoding=spec.source.encoding)


def ingest_raw(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str, files: list[Path]
) -> RawReport:
    """Replace the partition's raw rows with the rows of its landing files, plus provenance."""
    ingested_at = _now()
    staged, reports = stage_partition(con, files, spec.columns, ingested_at, csv_layout(spec))
    ts = quote(spec.timestamp_column)
    start, end, lag = con.execute(
        f"SELECT min({ts}), max({ts}), "
        f"date_diff('second', max({ts}), '{ingested_at}'::TIMESTAMPTZ) / 3600.0 FROM {staged}"
    ).fetchall()[0]
    tags = {
        "source_kind": spec.source.kind,
        "files": json.dumps([{"path": r.path, "sha256": r.sha256, "rows": r.rows} for r in reports]),
        "ingested_at": ingested_at,
        "event_start": start.isoformat() if start else None,
        "event_end": end.isoformat() if end else None,
        "arrival_lag_hours": lag,
    }
    with transaction(con):
        rows = replace_partition(con, spec.name, "raw", partition_key, f"SELECT * FROM {staged}")
        _write_tags(con, spec, "raw_tags", partition_key, {**tags, "rows": rows})
    return RawReport(
        rows,
        reports,
        sum(r.malformed_lines for r in reports),
        tags["event_start"],
        tags["event_end"],
        lag,
        ingested_at,
    )


def _write_tags(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    table: str,
    partition_key: str,
    tags: dict[str, Any],
) -> None:
    """One row of slice tags for the partition (JSON-encodes nested values)."""
    import pandas as pd

    frame = pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in tags.items()}])
    con.register("_tags", frame)
    replace_partition(con, spec.name, table, partition_key, "SELECT * FROM _tags")
    con.unregister("_tags")


@dataclass(frozen=True)
class ValidationReport:
    rows_in: int
    rows_valid: int
    rows_quarantined: int
    reasons: dict[str, int]
    null_rates: dict[str, float]
    outliers: dict[str, int]
    outlier_history: int
    rows_in_validated_table: int
    rows_in_quarantine_table: int

    @property
    def quarantine_rate(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    @property
    def conserved(self) -> bool:
        return self.rows_in == self.rows_in_validated_table + self.rows_in_quarantine_table


def _reason_kinds(reasons: dict[int, str]) -> dict[str, int]:
    """How many rows fail each kind of rule: the reasons with their values blanked out."""
    counts: Counter[str] = Counter()
    for text in reasons.values():
        for part in text.split("; "):
            counts[_VALUE.sub("…", part)[:100]] += 1
    return dict(counts.most_common(20))


def validate_partition(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str
) -> ValidationReport:
    """Split the raw partition into validated rows and quarantined rows with their reasons."""
    import pandas as pd

    key = key_literal(partition_key)
    raw = f"(SELECT * FROM {table_name(spec.name, 'raw')} WHERE {PARTITION_COLUMN} = {key})"
    columns = ", ".join(quote(c) for c in spec.columns)
    # Through Arrow, and only what the rules read: the pandas conversion is the costly part.
    frame = (
        con.sql(f"SELECT _source_file, _row_number, _cast_errors, {columns} FROM {raw}")
        .to_arrow_table()
        .to_pandas()
    )
    window = partition_window(spec.partitions, partition_key)
    bad = find_bad_rows(frame, spec, window)
    positions = list(bad)
    con.register(
        "_bad",
        pd.DataFrame(
            {
                "_source_file": frame["_source_file"].to_numpy()[positions].astype(object),
                "_row_number": frame["_row_number"].to_numpy()[positions].astype("int64"),
                "reason": list(bad.values()),
            }
        ),
    )
    lineage = ", ".join(c for c in PROVENANCE_COLUMNS if c != "_cast_errors")
    valid_sql = (
        f"SELECT {lineage}, {columns} FROM {raw} AS r ANTI JOIN _bad USING (_source_file, _row_number)"
    )
    quarantine_sql = (
        f"SELECT r._source_file, r._source_sha256, r._row_number, "
        f"r.{quote(spec.entity_id)}::VARCHAR AS entity_id, b.reason::VARCHAR AS reason, "
        f"to_json(struct_pack({', '.join(f'{quote(n)} := r.{quote(n)}' for n in spec.columns)}))"
        f"::VARCHAR AS row_values, r._cast_errors AS unparsed_values, "
        f"'{_now()}'::TIMESTAMPTZ AS quarantined_at "
        f"FROM {raw} AS r JOIN _bad AS b USING (_source_file, _row_number)"
    )
    stats_columns = _numeric_columns(spec)
    history_keys = _history_keys(con, spec, partition_key)
    history = _stats_history(con, spec, history_keys)
    bounds = robust_bounds(history, spec.quality.outlier_iqr_k, spec.unmonitored_columns)
    with transaction(con):
        valid = replace_partition(con, spec.name, "validated", partition_key, valid_sql)
        quarantined = replace_partition(con, spec.name, "quarantine", partition_key, quarantine_sql)
        validated_view = (
            f"(SELECT * FROM {table_name(spec.name, 'validated')} WHERE {PARTITION_COLUMN} = {key})"
        )
        stats = column_stats(
            con, validated_view, stats_columns, [c for c in spec.columns if c not in stats_columns]
        )
        outliers = count_outliers(con, validated_view, bounds)
        _write_stats(con, spec, partition_key, stats)
        report = ValidationReport(
            rows_in=len(frame),
            rows_valid=len(frame) - len(bad),
            rows_quarantined=len(bad),
            reasons=_reason_kinds(bad),
            null_rates={s.column: round(s.null_rate, 6) for s in stats},
            outliers=outliers,
            outlier_history=len(history_keys),
            rows_in_validated_table=valid,
            rows_in_quarantine_table=quarantined,
        )
        _write_tags(
            con,
            spec,
            "quality_tags",
            partition_key,
            {
                "rows_in": report.rows_in,
                "rows_valid": report.rows_valid,
                "rows_quarantined": report.rows_quarantined,
                "quarantine_rate": report.quarantine_rate,
                "null_rates": report.null_rates,
                "outlier_counts": report.outliers,
            },
        )
    con.unregister("_bad")
    return report


def _numeric_columns(spec: PipelineSpec) -> list[str]:
    return [n for n, c in spec.columns.items() if c.type in ("integer", "float")]


def _history_keys(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str) -> list[str]:
    if not table_exists(con, spec.name, "column_stats"):
        return []
    wanted = previous_keys(spec.partitions, partition_key, spec.quality.outlier_history_partitions)
    if not wanted:
        return []
    keys = ", ".join(key_literal(k) for k in wanted)
    rows = con.execute(
        f"SELECT DISTINCT {PARTITION_COLUMN} FROM {table_name(spec.name, 'column_stats')} "
        f"WHERE {PARTITION_COLUMN} IN ({keys})"
    ).fetchall()
    return [r[0] for r in rows]


def _stats_history(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, keys: list[str]) -> list[ColumnStats]:
    if not keys:
        return []
    rows = con.execute(
        f"SELECT column_name, rows, null_rate, q1, median, q3, p01, p99 FROM "
        f"{table_name(spec.name, 'column_stats')} WHERE {PARTITION_COLUMN} IN "
        f"({', '.join(key_literal(k) for k in keys)}) AND q1 IS NOT NULL"
    ).fetchall()
    return [ColumnStats(*row) for row in rows]


def _write_stats(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str, stats: list[ColumnStats]
) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [(s.column, s.rows, s.null_rate, s.q1, s.median, s.q3, s.p01, s.p99) for s in stats],
        columns=["column_name", "rows", "null_rate", "q1", "median", "q3", "p01", "p99"],
    ).astype({c: "float64" for c in ("q1", "median", "q3", "p01", "p99")})
    con.register("_stats", frame)
    replace_partition(con, spec.name, "column_stats", partition_key, "SELECT * FROM _stats")
    con.unregister("_stats")


@dataclass(frozen=True)
class ContextReport:
    rows: int
    unparsed_rows: int
    file: FileReport


def load_context(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, table: str, path: Path) -> ContextReport:
    """Replace a context table with its landed file; rows with unparsable values are set aside."""
    columns = spec.context_tables[table].columns
    report = stage_file(con, path, columns, "_context_stage", _now(), csv_layout(spec))
    target = table_name(spec.name, f"context_{table}")
    rejects = table_name(spec.name, f"context_{table}_rejects")
    with transaction(con):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(spec.name)}")
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT * EXCLUDE (_cast_errors) "
            "FROM _context_stage WHERE _cast_errors IS NULL"
        )
        con.execute(
            f"CREATE OR REPLACE TABLE {rejects} AS SELECT * FROM _context_stage "
            "WHERE _cast_errors IS NOT NULL"
        )
        rows = _count(con, f"SELECT * FROM {target}")
        unparsed = _count(con, f"SELECT * FROM {rejects}")
    return ContextReport(rows, unparsed, report)


@dataclass(frozen=True)
class GroupReport:
    rows: int
    definition_version: str
    null_rates: dict[str, float] = field(default_factory=dict)


def materialize_group(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, group: Group, partition_key: str
) -> GroupReport:
    """Compute one feature group (or the label) for a partition and replace its table partition.

    The output is checked inside the write's transaction, so a bad definition writes nothing; SQL
    that fails on the partition's data names its file.
    """
    import duckdb  # loaded already: `con` is a DuckDB connection

    bind_partition(con, spec, partition_key)
    check_group_columns(con, spec, group)
    version = definition_version(spec, group)
    written = (
        f"(SELECT * FROM {table_name(spec.name, group.table)} "
        f"WHERE {PARTITION_COLUMN} = {key_literal(partition_key)})"
    )
    with transaction(con):
        try:
            replace_partition(
                con,
                spec.name,
                group.table,
                partition_key,
                f"SELECT *, '{version}' AS _definition_version FROM ({spec.sql_text(group.sql_path)})",
            )
        except duckdb.DataError as err:  # a value the SQL cannot convert or compute, on this data
            raise FeatureDefinitionError(
                f"{spec.spec_dir / group.sql_path}: the SQL of {describe_group(group)} fails on "
                f"partition {partition_key}: {duckdb_reason(err)}"
            ) from err
        rows = check_group_rows(con, spec, group, written)
        nulls = con.execute(
            "SELECT "
            + ", ".join(f"1 - count({quote(c)}) / greatest(count(*), 1)" for c in group.columns)
            + f" FROM {written}"
        ).fetchall()[0]
    return GroupReport(
        rows, version, {c: round(float(v), 6) for c, v in zip(group.columns, nulls, strict=True)}
    )


@dataclass(frozen=True)
class FeaturesReport:
    rows: int
    label_rate: float | None
    validated_rows: int


def build_features(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str) -> FeaturesReport:
    """Join the partition's feature groups and label into the training-ready feature table."""
    label = quote(spec.label.column)
    with transaction(con):
        rows = replace_partition(
            con, spec.name, "features", partition_key, feature_table_sql(spec, partition_key)
        )
        rate = con.execute(
            f"SELECT avg({label}::DOUBLE) FROM {table_name(spec.name, 'features')} "
            f"WHERE {PARTITION_COLUMN} = {key_literal(partition_key)}"
        ).fetchall()[0][0]
        validated = _count(
            con,
            f"SELECT * FROM {table_name(spec.name, 'validated')} "
            f"WHERE {PARTITION_COLUMN} = {key_literal(partition_key)}",
        )
    return FeaturesReport(rows, rate, validated)
