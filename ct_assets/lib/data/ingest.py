"""Reading landing files into typed rows with provenance, without losing any row.

Each value is cast to the spec's type; a value that does not parse is kept, as text, in the row's
`_cast_errors` (a JSON object column -> original value), and a CSV line that cannot be split into
the right number of fields becomes a row of NULLs whose `_cast_errors` holds the line itself.
Validation quarantines both with a reason. Missing or extra columns, or a column whose type has
changed, are schema drift: the whole file is refused with an error naming it and the columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.core.spec import ColumnSpec
from ct_assets.lib.core.warehouse import quote, sql_string
from ct_assets.lib.data import csv_format
from ct_assets.lib.data.csv_format import DEFAULT_CSV, CsvFormat
from ct_assets.lib.data.landing import LandingError, file_format, sha256_of

if TYPE_CHECKING:
    import duckdb

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
}
_INTEGERS = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)
# Parquet types that may stand for each spec type (DuckDB's names, compared by prefix).
_COMPATIBLE = {
    "string": ("VARCHAR",),
    "integer": _INTEGERS,
    "float": (*_INTEGERS, "FLOAT", "DOUBLE", "DECIMAL"),
    "boolean": ("BOOLEAN",),
    "timestamp": ("TIMESTAMP",),
    "date": ("DATE",),
}
NULL_STRINGS = ["", "NA", "NULL", "null", "NaN"]
PROVENANCE_COLUMNS = [
    "_source_file",
    "_source_sha256",
    "_row_number",
    "_ingested_at",
    "_cast_errors",
]


class SchemaDriftError(ValueError):
    """A file whose columns or column types differ from the spec; names the file and columns."""


@dataclass(frozen=True)
class FileReport:
    path: str
    sha256: str
    rows: int
    malformed_lines: int


def _check_columns(path: Path, found: list[str], columns: dict[str, ColumnSpec]) -> None:
    missing = [c for c in columns if c not in found]
    extra = [c for c in found if c not in columns]
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unexpected columns {extra}")
    if problems:
        raise SchemaDriftError(f"{path}: schema drift: " + "; ".join(problems))


def _typed_select(source: str, columns: dict[str, ColumnSpec], provenance: str) -> str:
    """SELECT casting every column, collecting unparsable values into `_cast_errors`."""
    values, errors = [], []
    for name, column in columns.items():
        col, target = quote(name), DUCKDB_TYPES[column.type]
        typed = f"TRY_CAST({col} AS {target})"
        if column.type == "integer":
            # DuckDB rounds '4.5' (and 4.5) to 5 when it casts to an integer: only a value that
            # reads as the same number as a double is an integer.
            typed = f"(CASE WHEN TRY_CAST({col} AS DOUBLE) = {typed} THEN {typed} END)"
        values.append(f"{typed} AS {col}")
        errors.append(
            f"CASE WHEN {col} IS NOT NULL AND {typed} IS NULL "
            f"THEN to_json({sql_string(name)}) || ':' || to_json({col}::VARCHAR) END"
        )
    cast_errors = f"NULLIF('{{' || concat_ws(',', {', '.join(errors)}) || '}}', '{{}}')"
    return f"SELECT {provenance}, {cast_errors} AS _cast_errors, {', '.join(values)} FROM {source}"


def _check_parquet_types(
    con: duckdb.DuckDBPyConnection, path: Path, columns: dict[str, ColumnSpec]
) -> list[str]:
    import duckdb  # 0.3 s to load: the code location loads without it

    try:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_string(str(path))})").fetchall()
    except duckdb.Error as err:
        reason = str(err).splitlines()[0].removeprefix("Invalid Input Error: ")
        raise LandingError(f"{path}: not readable Parquet ({reason})") from err
    found = {row[0]: str(row[1]).upper() for row in described}
    _check_columns(path, list(found), columns)
    changed = [
        f"{name} is {found[name]}, spec says {column.type}"
        for name, column in columns.items()
        if not found[name].startswith(_COMPATIBLE[column.type])
    ]
    if changed:
        raise SchemaDriftError(f"{path}: schema drift: changed column types: {'; '.join(changed)}")
    return list(found)


def _csv_stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: dict[str, ColumnSpec],
    stage: str,
    layout: CsvFormat,
) -> int:
    """Load a CSV as text into `stage` with a `_row_number`; returns the malformed line count."""
    import duckdb  # 0.3 s to load: the code location loads without it

    csv_format.check(path, layout, len(columns))
    rejects = f"{stage}_rejects"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage}_text AS "
            f"SELECT row_number() OVER () AS _ordinal, * FROM read_csv(?, all_varchar = true, "
            f"header = true, nullstr = ?, delim = ?, encoding = ?, store_rejects = true, "
            f"rejects_table = '{rejects}', rejects_scan = '{rejects}_scan')",
            [str(path), NULL_STRINGS, layout.delimiter, layout.encoding],
        )
    except duckdb.Error as err:
        reason = str(err).splitlines()[0].removeprefix("Invalid Input Error: ")
        raise SchemaDriftError(f"{path}: cannot be read as CSV: {reason}") from err
    header = [r[0] for r in con.execute(f"DESCRIBE {stage}_text").fetchall()][1:]
    _check_columns(path, header, columns)
    # Rejected lines, one row per line, with the first problem DuckDB found on it (a short line is
    # reported once per missing field; the first report counts its fields).
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {stage}_bad AS SELECT line - 1 AS _row_number, "
        f"any_value(csv_line) AS csv_line, "
        f"'line ' || line || ': ' || arg_min(error_message, column_idx) AS error "
        f"FROM {rejects} GROUP BY line"
    )
    bad = con.execute(f"SELECT count(*) FROM {stage}_bad").fetchall()[0][0]
    # Accepted rows take the record numbers that rejected lines did not.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {stage} AS "
        f"WITH numbers AS (SELECT n AS _row_number, row_number() OVER (ORDER BY n) AS _ordinal "
        f"  FROM range(1, (SELECT count(*) FROM {stage}_text) + {bad} + 1) r(n) "
        f"  WHERE n NOT IN (SELECT _row_number FROM {stage}_bad)) "
        f"SELECT numbers._row_number, t.* EXCLUDE (_ordinal) FROM {stage}_text t "
        f"JOIN numbers USING (_ordinal)"
    )
    return int(bad)


def stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: dict[str, ColumnSpec],
    stage: str,
    ingested_at: str,
    layout: CsvFormat = DEFAULT_CSV,
) -> FileReport:
    """Create temp table `stage` with provenance, `_cast_errors` and typed spec columns."""
    kind = file_format(path)
    digest = sha256_of(path)
    provenance = (
        f"{sql_string(str(path))} AS _source_file, '{digest}' AS _source_sha256, _row_number, "
        f"'{ingested_at}'::TIMESTAMPTZ AS _ingested_at"
    )
    malformed = 0
    if kind == "parquet":
        _check_parquet_types(con, path, columns)
        source = (
            f"(SELECT file_row_number + 1 AS _row_number, * EXCLUDE (file_row_number) FROM "
            f"read_parquet({sql_string(str(path))}, file_row_number = true))"
        )
    else:
        malformed = _csv_stage(con, path, columns, f"{stage}_csv", layout)
        source = f"{stage}_csv"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {stage} AS {_typed_select(source, columns, provenance)}")
    if malformed:
        nulls = ", ".join(f"NULL::{DUCKDB_TYPES[c.type]} AS {quote(n)}" for n, c in columns.items())
        con.execute(
            f"INSERT INTO {stage} SELECT {provenance}, json_object('_line', csv_line, '_error', error)"
            f"::VARCHAR AS _cast_errors, {nulls} FROM {stage}_csv_bad"
        )
    _refuse_changed_csv_types(con, path, columns, stage, kind)
    rows = con.execute(f"SELECT count(*) FROM {stage}").fetchall()[0][0]
    return FileReport(path=str(path), sha256=digest, rows=int(rows), malformed_lines=malformed)


def _refuse_changed_csv_types(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: dict[str, ColumnSpec],
    stage: str,
    kind: str,
) -> None:
    """A CSV column none of whose values parse as its type has changed type: schema drift."""
    if kind != "csv":
        return
    typed = [n for n, c in columns.items() if c.type != "string"]
    if not typed:
        return
    counts = con.execute(
        "SELECT "
        + ", ".join(
            f"count({quote(n)}), count(*) FILTER "
            f"(WHERE json_exists(_cast_errors, {sql_string('$.' + json.dumps(n))}))"
            for n in typed
        )
        + f" FROM {stage}"
    ).fetchall()[0]
    changed = [
        f"{name} (none of {counts[2 * i + 1]} values is a valid {columns[name].type})"
        for i, name in enumerate(typed)
        if counts[2 * i] == 0 and counts[2 * i + 1] >= 5
    ]
    if changed:
        raise SchemaDriftError(f"{path}: schema drift: changed column types: {', '.join(changed)}")


def stage_partition(
    con: duckdb.DuckDBPyConnection,
    files: list[Path],
    columns: dict[str, ColumnSpec],
    ingested_at: str,
    layout: CsvFormat = DEFAULT_CSV,
) -> tuple[str, list[FileReport]]:
    """Stage all files of a partition into one temp table; returns its name and per-file reports."""
    reports, stages = [], []
    for index, path in enumerate(files):
        stage = f"_stage_{index}"
        reports.append(stage_file(con, path, columns, stage, ingested_at, layout))
        stages.append(f"SELECT * FROM {stage}")
    con.execute("CREATE OR REPLACE TEMP TABLE _raw_incoming AS " + " UNION ALL BY NAME ".join(stages))
    return "_raw_incoming", reports
