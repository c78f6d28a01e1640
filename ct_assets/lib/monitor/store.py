"""The monitoring layer's warehouse tables, each declared once with its column types.

A table created from the first frame written to it would take that frame's types, and a column
that frame held only nulls for would get DuckDB's NULL type, which no later value converts to.
So each table is created with its declared types and every write casts to them. A table whose
columns differ from the declaration (a column declared since it was created, or of another type)
is brought to it on its next write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ct_assets.lib.core.warehouse import (
    PARTITION_COLUMN,
    quote,
    replace_partition,
    table_columns,
    table_exists,
    table_name,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

Schema = dict[str, str]  # column -> DuckDB type, spelled as information_schema reports it

DRIFT_SUMMARY: Schema = {
    "champion_version": "VARCHAR",
    "rows": "BIGINT",
    "drift_share": "DOUBLE",
    "drifted": "VARCHAR",  # JSON: feature -> distance
    "skipped": "VARCHAR",
    "label_rate": "DOUBLE",
    "reference_label_rate": "DOUBLE",
    "prediction_hellinger": "DOUBLE",
    "description": "VARCHAR",
}

DRIFT_COLUMNS: Schema = {
    "column": "VARCHAR",
    "kind": "VARCHAR",
    "rows": "BIGINT",
    "hellinger": "DOUBLE",
    "statistic": "DOUBLE",
    "pvalue": "DOUBLE",
    "null_rate": "DOUBLE",
    "reference_null_rate": "DOUBLE",
    "new_values": "VARCHAR",  # JSON list
    "skipped": "VARCHAR",
    "threshold": "DOUBLE",
}

LIVE_PERFORMANCE: Schema = {
    "partition": "VARCHAR",
    "model_version": "VARCHAR",
    "source": "VARCHAR",
    "segment": "VARCHAR",
    "rows": "BIGINT",
    "positive_rate": "DOUBLE",
    "auc": "DOUBLE",
    "f1": "DOUBLE",
    "log_loss": "DOUBLE",
    "brier": "DOUBLE",
    "ece": "DOUBLE",
}

PREDICTIONS: Schema = {
    "request_id": "VARCHAR",
    "time": "VARCHAR",
    "model_version": "VARCHAR",
    "slot": "VARCHAR",
    "entity_id": "VARCHAR",
    "score": "DOUBLE",
    "decision": "BOOLEAN",
    "event_time": "VARCHAR",
    "latency_ms": "DOUBLE",
}

TABLES: dict[str, Schema] = {
    "drift_summary": DRIFT_SUMMARY,
    "drift_columns": DRIFT_COLUMNS,
    "live_performance": LIVE_PERFORMANCE,
    "predictions": PREDICTIONS,
}


def _declared(table: str) -> Schema:
    return {PARTITION_COLUMN: "VARCHAR", **TABLES[table]}


def ensure_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    """Create `schema.table` with its declared types, or bring an existing one to them.

    Missing columns are added; a column of another type is converted in place, values that do not
    convert becoming NULL. Returns the repairs
    made, empty when the table already matched.
    """
    target = table_name(schema, table)
    declared = _declared(table)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    if not table_exists(con, schema, table):
        columns = ", ".join(f"{quote(name)} {dtype}" for name, dtype in declared.items())
        con.execute(f"CREATE TABLE {target} ({columns})")
        return []
    existing = table_columns(con, schema, table)
    repairs = []
    for name, dtype in declared.items():
        found = existing.get(name)
        if found is None:
            con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {dtype}")
            repairs.append(f"added {name} {dtype}")
        elif found != dtype:
            column = quote(name)
            con.execute(
                f"ALTER TABLE {target} ALTER COLUMN {column} SET DATA TYPE {dtype} "
                f"USING TRY_CAST({column} AS {dtype})"
            )
            repairs.append(f"{name} {found} -> {dtype}")
    return repairs


def write_partition(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, partition_key: str, frame: pd.DataFrame
) -> int:
    """Replace one partition of a declared table with `frame`, cast to the declared types.

    Runs inside the caller's transaction. Declared columns the frame lacks are written as NULL;
    a frame column the declaration does not know is an error (declare it first).
    """
    declared = TABLES[table]
    unknown = [c for c in frame.columns if c not in declared]
    if unknown:
        raise ValueError(f"{schema}.{table} declares no column {unknown}")
    ensure_table(con, schema, table)
    selected = ", ".join(
        f"CAST({quote(name) if name in frame.columns else 'NULL'} AS {dtype}) AS {quote(name)}"
        for name, dtype in declared.items()
    )
    view = f"_monitor_{table}"
    con.register(view, frame)
    try:
        return replace_partition(con, schema, table, partition_key, f"SELECT {selected} FROM {view}")
    finally:
        con.unregister(view)
