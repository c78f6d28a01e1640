"""Feature groups: the pipeline's own DuckDB SQL, run the same way for training and serving.

A group's SQL reads a view named `validated` (the rows to featurize) and views named after the
spec's context tables, and returns the entity id plus exactly the columns the spec declares. The
engine binds those views to a partition of the warehouse here; the serving layer binds them to a
request and the online snapshot, so both paths run one implementation. `definition_problems`
binds every group's SQL to empty tables of the spec's types, so `ct spec check` finds a misspelled
column before any run does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ct_assets.lib.core.names import LABEL_GROUP
from ct_assets.lib.core.spec import ColumnSpec, PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, quote, table_name
from ct_assets.lib.data.ingest import DUCKDB_TYPES

if TYPE_CHECKING:
    import duckdb


class FeatureDefinitionError(ValueError):
    """A feature SQL file whose output does not match the spec; names the file and columns."""


@dataclass(frozen=True)
class Group:
    """A unit of feature computation: a feature group, or the label."""

    name: str
    sql_path: str
    columns: dict[str, str]  # column -> "categorical" | "numeric" | "label"
    description: str

    @property
    def table(self) -> str:
        return f"fg_{self.name}" if self.name != LABEL_GROUP else "labels"


def groups(spec: PipelineSpec) -> list[Group]:
    """Every feature group of the spec, then the label."""
    result = [
        Group(name, g.sql, {c: col.kind for c, col in g.columns.items()}, g.description)
        for name, g in spec.feature_groups.items()
    ]
    result.append(Group(LABEL_GROUP, spec.label.sql, {spec.label.column: "label"}, spec.label.description))
    return result


def group_by_name(spec: PipelineSpec, name: str) -> Group:
    for group in groups(spec):
        if group.name == name:
            return group
    raise KeyError(f"{spec.name} has no feature group {name!r}")


def definition_version(spec: PipelineSpec, group: Group) -> str:
    """A hash of everything that defines the group's output: its SQL, columns and entity id."""
    payload = json.dumps(
        {"sql": spec.sql_text(group.sql_path), "columns": group.columns, "id": spec.entity_id},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def context_view_sql(spec: PipelineSpec, table: str) -> str:
    return f"SELECT * FROM {table_name(spec.name, 'context_' + table)}"


def bind_partition(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str) -> None:
    """Point the `validated` and context views at one warehouse partition."""
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW validated AS SELECT * FROM "
        f"{table_name(spec.name, 'validated')} WHERE {PARTITION_COLUMN} = {key_literal(partition_key)}"
    )
    for table in spec.context_tables:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(table)} AS {context_view_sql(spec, table)}")


def duckdb_reason(err: duckdb.Error) -> str:
    """DuckDB's message on one line: its first paragraph (the error and any candidate names),
    without the quoted query and caret that follow."""
    head = str(err).strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in head.splitlines() if line.strip())


def check_group_columns(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, group: Group) -> None:
    """The group's SQL must bind against the views and return exactly the entity id and the
    declared columns; either failure is a `FeatureDefinitionError` naming the SQL file."""
    import duckdb  # loaded already: `con` is a DuckDB connection

    try:
        described = con.execute(f"DESCRIBE {spec.sql_text(group.sql_path)}").fetchall()
    except duckdb.Error as err:
        what = describe_group(group)
        raise FeatureDefinitionError(
            f"{spec.spec_dir / group.sql_path}: the SQL of {what} fails: {duckdb_reason(err)}"
        ) from err
    produced = [row[0] for row in described]
    expected = [spec.entity_id, *group.columns]
    missing = [c for c in expected if c not in produced]
    extra = [c for c in produced if c not in expected]
    if missing or extra:
        raise FeatureDefinitionError(
            f"{spec.spec_dir / group.sql_path}: output columns differ from the spec's group "
            f"{group.name!r}: missing {missing}, not declared {extra}"
        )


def describe_group(group: Group) -> str:
    """The group as a message names it: the label, or feature group 'name'."""
    return "the label" if group.name == LABEL_GROUP else f"feature group {group.name!r}"


def _empty_table(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, ColumnSpec]) -> None:
    typed = ", ".join(f"NULL::{DUCKDB_TYPES[c.type]} AS {quote(n)}" for n, c in columns.items())
    con.execute(f"CREATE TEMP TABLE {quote(name)} AS SELECT {typed} LIMIT 0")


def definition_problems(spec: PipelineSpec) -> list[str]:
    """One line per feature group (or label) whose SQL does not bind against empty tables of the
    spec's types (`validated` with the spec's columns, each context table with its declared ones)
    or does not return the declared columns, naming its SQL file."""
    import duckdb  # 0.3 s to load: the code location loads without it

    problems = []
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        _empty_table(con, "validated", spec.columns)
        for table, context in spec.context_tables.items():
            _empty_table(con, table, context.columns)
        for group in groups(spec):
            try:
                check_group_columns(con, spec, group)
            except FeatureDefinitionError as err:
                problems.append(str(err))
    return problems


def check_group_rows(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, group: Group, output: str) -> int:
    """The group's output (a table or subquery) must hold one row per row of `validated`."""
    counts = con.execute(
        f"SELECT count(*), count(DISTINCT {quote(spec.entity_id)}), "
        f"(SELECT count(*) FROM validated) FROM {output}"
    ).fetchall()[0]
    rows, distinct_ids, inputs = (int(v) for v in counts)
    if rows != distinct_ids or rows != inputs:
        raise FeatureDefinitionError(
            f"{spec.spec_dir / group.sql_path}: must return one row per input row: got {rows} rows, "
            f"{distinct_ids} distinct {spec.entity_id}, for {inputs} input rows"
        )
    return rows


def run_group_sql(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, group: Group, into: str = "_group_out"
) -> int:
    """Run the group's SQL against the bound views into temp table `into`; check its output."""
    check_group_columns(con, spec, group)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {into} AS {spec.sql_text(group.sql_path)}")
    return check_group_rows(con, spec, group, into)


def feature_table_sql(spec: PipelineSpec, partition_key: str) -> str:
    """The partition's training-ready rows: id, timestamp, segments, features and label."""
    key = key_literal(partition_key)
    entity = quote(spec.entity_id)
    select = [f"v.{entity}", f"v.{quote(spec.timestamp_column)}"]
    joins = []
    features = set(spec.feature_columns)
    select += [f"v.{quote(s)}" for s in spec.segments if s not in features]
    for index, group in enumerate(groups(spec)):
        alias = f"g{index}"
        select += [f"{alias}.{quote(c)}" for c in group.columns]
        joins.append(
            f"LEFT JOIN (SELECT * FROM {table_name(spec.name, group.table)} WHERE "
            f"{PARTITION_COLUMN} = {key}) AS {alias} USING ({entity})"
        )
    return (
        f"SELECT {', '.join(select)} FROM (SELECT * FROM {table_name(spec.name, 'validated')} "
        f"WHERE {PARTITION_COLUMN} = {key}) AS v " + " ".join(joins)
    )


def find_leakage(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, group: Group, partition_key: str
) -> dict[str, int]:
    """Columns of `group` that change when information from after the event time is removed.

    For several cutoff times inside the partition, the group is recomputed with every post-event
    column set to NULL and every time-series context table cut at the cutoff; the features of rows
    whose event time is at or before the cutoff must not change (with no time-series context table
    the recomputation is the same at every cutoff, so only the latest one runs). Returns column ->
    rows changed.
    """
    bind_partition(con, spec, partition_key)
    run_group_sql(con, spec, group, into="_leak_base")
    ts = quote(spec.timestamp_column)
    con.execute("CREATE OR REPLACE TEMP TABLE _leak_rows AS SELECT * FROM validated")
    count = spec.quality.leakage_cutoffs
    quantiles = [i / (count + 1) for i in range(1, count + 1)]
    found = con.execute(f"SELECT quantile_disc({ts}, {quantiles}) FROM _leak_rows").fetchall()[0]
    cutoffs = sorted({value for value in (found[0] or []) if value is not None})
    if cutoffs and not any(t.kind == "time_series" for t in spec.context_tables.values()):
        # Only post-event columns are removed, the same at every cutoff: the latest one covers the
        # rows of all the others.
        cutoffs = cutoffs[-1:]
    blanked = ", ".join(
        f"NULL::{DUCKDB_TYPES[spec.columns[c].type]} AS {quote(c)}" for c in spec.post_event_columns
    )
    replace = f" REPLACE ({blanked})" if blanked else ""
    changed: dict[str, int] = {}
    try:
        for cutoff in cutoffs:
            con.execute(f"CREATE OR REPLACE TEMP VIEW validated AS SELECT *{replace} FROM _leak_rows")
            for name, table in spec.context_tables.items():
                if table.kind == "time_series":
                    con.execute(
                        f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM "
                        f"({context_view_sql(spec, name)}) "
                        f"WHERE {quote(table.time_column or '')} <= '{cutoff.isoformat()}'::TIMESTAMPTZ"
                    )
            run_group_sql(con, spec, group, into="_leak_cut")
            entity = quote(spec.entity_id)
            diffs = con.execute(
                "SELECT "
                + ", ".join(
                    f"count(*) FILTER (WHERE b.{quote(c)} IS DISTINCT FROM c.{quote(c)})"
                    for c in group.columns
                )
                + f" FROM _leak_base b JOIN _leak_cut c USING ({entity}) "
                f"JOIN _leak_rows r USING ({entity}) WHERE r.{ts} <= ?",
                [cutoff],
            ).fetchall()[0]
            for column, count in zip(group.columns, diffs, strict=True):
                if count:
                    changed[column] = changed.get(column, 0) + int(count)
    finally:
        bind_partition(con, spec, partition_key)
    return changed
