"""The DuckDB warehouse: connections and atomic, idempotent partition writes.

Every partitioned table carries a `_partition_key` column. Writing a partition deletes what that
key held and inserts the new rows in one transaction, so a rerun replaces a partition instead of
duplicating it, and a crash leaves the old rows or the new ones, never half of each.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core import faults

if TYPE_CHECKING:
    import duckdb

PARTITION_COLUMN = "_partition_key"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote(identifier: str) -> str:
    """A DuckDB identifier in double quotes."""
    return '"' + identifier.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + value.replace("'", "''") + "'"


def table_name(schema: str, table: str) -> str:
    if not (_SAFE_NAME.match(schema) and _SAFE_NAME.match(table)):
        raise ValueError(f"unsafe table name {schema}.{table}")
    return f"{quote(schema)}.{quote(table)}"


class WarehouseMissing(FileNotFoundError):
    """A reader asked for a warehouse that no ingest has created yet."""


def open_connection(
    path: Path | str, *, threads: int | None = None, retries: int = 60, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse in UTC, waiting while another process holds the file's write lock. A
    read-only open of a warehouse that does not exist yet is a `WarehouseMissing` that says so."""
    import duckdb  # 0.3 s to load: the code location loads without it

    if read_only and not Path(path).is_file():
        raise WarehouseMissing(
            f"no warehouse at {path} yet: nothing has been ingested (land files and ingest first)"
        )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    delay = 0.1
    for attempt in range(retries):
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as err:
            if "lock" not in str(err).lower() or attempt == retries - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


@contextmanager
def connection(path: Path | str, **kwargs: Any) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_connection(path, **kwargs)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Commit on success, roll back on any error."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()[0]
    return bool(found and found[0])


def table_columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def replace_partition(
    con: duckdb.DuckDBPyConnection, schema: str, table: str, partition_key: str, source_sql: str
) -> int:
    """Replace one partition of `schema.table` with the rows of `source_sql`.

    Runs inside the caller's transaction. The table is created from the source's columns on first
    use; columns the source adds later are added to the table (rows written before keep NULL), so
    a changed definition never needs a destructive migration. Returns the rows written.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    target = table_name(schema, table)
    con.execute(f"CREATE OR REPLACE TEMP VIEW _incoming AS {source_sql}")
    incoming = [(r[0], r[1]) for r in con.execute("DESCRIBE _incoming").fetchall()]
    if not table_exists(con, schema, table):
        con.execute(
            f"CREATE TABLE {target} AS SELECT {key_literal(partition_key)} AS {PARTITION_COLUMN}, "
            "* FROM _incoming LIMIT 0"
        )
    else:
        existing = table_columns(con, schema, table)
        for name, dtype in incoming:
            if name not in existing:
                con.execute(f"ALTER TABLE {target} ADD COLUMN {quote(name)} {dtype}")
    con.execute(f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = ?", [partition_key]).fetchall()
    written = con.execute(
        f"INSERT INTO {target} BY NAME "
        f"SELECT {key_literal(partition_key)} AS {PARTITION_COLUMN}, * FROM _incoming"
    ).fetchall()
    faults.point(f"write {schema}.{table} {partition_key}")  # chaos tests stop here (lib/faults.py)
    con.execute("DROP VIEW _incoming")
    return int(written[0][0]) if written else 0


def key_literal(partition_key: str) -> str:
    """A partition key as a SQL string literal; keys are dates or simple names, nothing else."""
    if not re.match(r"^[0-9A-Za-z_:\-]+$", partition_key):
        raise ValueError(f"unsafe partition key {partition_key!r}")
    return f"'{partition_key}'::VARCHAR"


def partition_view_sql(schema: str, table: str, partition_keys: list[str]) -> str:
    """SQL selecting the given partitions of a table."""
    keys = ", ".join(key_literal(k) for k in partition_keys)
    return f"SELECT * FROM {table_name(schema, table)} WHERE {PARTITION_COLUMN} IN ({keys})"
