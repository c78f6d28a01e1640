"""Feature computation for served requests: the pipeline's own feature SQL (the same code the
warehouse path runs) in one in-memory DuckDB holding the online snapshot. One row runs a statement
prepared once per thread with the row as its parameters; a batch registers the request as an Arrow
table and fetches the result as Arrow, put back in request order."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import quote
from ct_assets.lib.data.features import check_group_columns, groups
from ct_assets.lib.data.ingest import DUCKDB_TYPES
from ct_assets.lib.serving.arrow_column_types import ARROW_TYPES
from ct_assets.lib.serving.request_parsing import TypedRequest, request_columns

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


class FeatureRows:
    """The feature SQL's output, in request order: column names, and either one tuple per row (one
    row) or an Arrow table (batches); Python lists per column are built from either when asked for."""

    def __init__(
        self,
        names: list[str],
        rows: list[tuple[Any, ...]] | None = None,
        table: pa.Table | None = None,
    ) -> None:
        self.names = names
        self._rows = rows
        self.table = table
        self._columns: dict[str, list[Any]] = {}

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = list(zip(*(self.column(n) for n in self.names), strict=True))
        return self._rows

    @property
    def columns(self) -> dict[str, list[Any]]:
        return {name: self.column(name) for name in self.names}

    def __len__(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.rows)

    def column(self, name: str) -> list[Any]:
        """One feature's values as Python objects (None for nulls)."""
        values = self._columns.get(name)
        if values is None:
            if self.table is not None:
                values = self.table.column(name).to_pylist()
            else:
                index = self.names.index(name)
                values = [row[index] for row in self.rows]
            self._columns[name] = values
        return values

    def arrow_column(self, name: str) -> pa.Array:
        import pyarrow as pa

        if self.table is not None:
            return self.table.column(name).combine_chunks()
        return pa.array(self.column(name))

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame.from_records(self.rows, columns=self.names)


class FeatureEngine:
    """Features for request rows, for the life of a service process.

    One in-memory DuckDB holds the online snapshot (loaded once, reloaded when a new snapshot is
    published); the pipeline's feature SQL is checked against the spec once, then every request runs
    all groups as one query on its own cursor, over the request registered as an Arrow table.
    """

    def __init__(self, spec: PipelineSpec, snapshot: Path | None, threads: int = 1) -> None:
        import duckdb  # 0.3 s to load: only a serving process needs it

        self.spec = spec
        self.snapshot = Path(snapshot) if snapshot else None
        self.con = duckdb.connect(config={"threads": threads})
        self.con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._loaded: float | None = None
        self.request_fields = list(request_columns(spec))

        self._arrow_types = {n: ARROW_TYPES[c.type] for n, c in spec.columns.items()}
        self.query = ""
        self._one_row = ""
        self._one_row_tail = ""
        self._local = threading.local()
        if self.snapshot is not None:
            self.reload_if_new()
            self.query = self._checked_query()
            self._one_row = self._one_row_query()

    def reload_if_new(self) -> None:
        """Load the snapshot's tables if it was published since the last load."""
        if self.snapshot is None:
            return
        try:  # one stat per request; only a newly published snapshot does more
            stamp = (self.snapshot / "manifest.json").stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == self._loaded:
            return
        with self._lock:
            if stamp == self._loaded:  # another thread loaded it while this one waited
                return
            for table in self.spec.context_tables:
                path = self.snapshot / f"{table}.parquet"
                self.con.execute(
                    f"CREATE OR REPLACE TABLE {quote(table)} AS SELECT * FROM read_parquet('{path}')"
                )
            self._loaded = stamp

    def _checked_query(self) -> str:
        spec = self.spec
        columns = ", ".join(f"NULL::{DUCKDB_TYPES[c.type]} AS {quote(n)}" for n, c in spec.columns.items())
        self.con.execute(f"CREATE TEMP TABLE validated AS SELECT {columns} LIMIT 0")
        entity = quote(spec.entity_id)
        select, joins, one_row_joins = [f"v.{entity}"], [], []
        for index, group in enumerate(g for g in groups(spec) if g.name != "label"):
            check_group_columns(self.con, spec, group)
            select += [f"g{index}.{quote(c)}" for c in group.columns]
            joins.append(f"LEFT JOIN ({spec.sql_text(group.sql_path)}) AS g{index} USING ({entity})")
            # One request row: every group's rows belong to it, so no key to match; DuckDB plans
            # this join in less time than the keyed one, and plans the one-row query per request.
            one_row_joins.append(f"LEFT JOIN ({spec.sql_text(group.sql_path)}) AS g{index} ON TRUE")
        self.con.execute("DROP TABLE validated")
        self._one_row_tail = f" SELECT {', '.join(select)} FROM validated AS v {' '.join(one_row_joins)}"
        # The request arrives typed; the casts make its types exactly the warehouse's.
        typed = ", ".join(
            f"CAST({quote(n)} AS {DUCKDB_TYPES[c.type]}) AS {quote(n)}" for n, c in spec.columns.items()
        )
        return (
            f"WITH validated AS (SELECT {typed} FROM _request) SELECT {', '.join(select)} "
            f"FROM validated AS v {' '.join(joins)}"
        )

    def _one_row_query(self) -> str:
        """The same feature SQL with the request row as typed parameters, for one prepared statement
        per thread: a single row skips registering an Arrow table and parsing the query (DuckDB still
        binds and plans an SQL-level EXECUTE every time, most of a single row's feature time)."""
        self._params = [n for n in self.spec.columns if n in self.request_fields]
        row = []
        for name, column in self.spec.columns.items():
            kind = DUCKDB_TYPES[column.type]
            if name in self.request_fields:
                row.append(f"${self._params.index(name) + 1}::{kind} AS {quote(name)}")
            else:
                row.append(f"NULL::{kind} AS {quote(name)}")
        return f"WITH validated AS (SELECT {', '.join(row)})" + self._one_row_tail

    def _prepared_cursor(self) -> Any:
        """This thread's cursor, with the one-row query prepared (again after a snapshot reload)."""
        local = self._local
        if getattr(local, "cursor", None) is None or local.loaded != self._loaded:
            if getattr(local, "cursor", None) is not None:
                local.cursor.close()
            local.cursor = self.con.cursor()
            local.cursor.execute(f"PREPARE _features AS {self._one_row}")
            local.loaded = self._loaded
        return local.cursor

    def arrow(self, request: TypedRequest) -> Any:
        """The request as an Arrow table of every spec column (post-event ones all null)."""
        import pyarrow as pa

        count = len(request)
        table = request.table
        arrays = [
            (table.column(name) if table is not None else pa.array(request.column(name), type=kind))
            if name in request
            else pa.nulls(count, type=kind)
            for name, kind in self._arrow_types.items()
        ]
        return pa.Table.from_arrays(arrays, names=list(self._arrow_types))

    def features(self, request: TypedRequest) -> FeatureRows:
        if len(request) == 1 and self._one_row:
            literals = _literals([request.column(n)[0] for n in self._params])
            if literals is not None:
                result = self._prepared_cursor().execute(f"EXECUTE _features({literals})")
                return self._in_request_order(request, [d[0] for d in result.description], result.fetchall())
        table = self.arrow(request)
        cursor = self.con.cursor()
        try:
            cursor.register("_request", table)
            result = cursor.execute(self.query)
            with warnings.catch_warnings():
                # DuckDB suggests its relation API to save a copy; that API costs more than the copy.
                warnings.simplefilter("ignore", UserWarning)
                result = result.to_arrow_table()
        finally:
            cursor.close()
        return self._table_in_request_order(request, result)

    def _table_in_request_order(self, request: TypedRequest, result: pa.Table) -> FeatureRows:
        """The SQL's rows put back in request order (ids are unique: the rules refuse duplicates)."""
        import pyarrow.compute as pc

        ids = request.arrow_column(self.spec.entity_id)
        order = pc.index_in(ids, value_set=result.column(0).combine_chunks())
        if result.num_rows != len(ids) or order.null_count:
            found = f"{result.num_rows} rows for {len(ids)}, or other ids"
            raise RuntimeError(f"feature SQL of {self.spec.name} returned {found}")
        return FeatureRows(result.column_names, table=result.take(order))

    def _in_request_order(self, request: TypedRequest, names: list[str], found: list[Any]) -> FeatureRows:
        ids = request.column(self.spec.entity_id)
        if len(found) != len(ids):
            raise RuntimeError(f"feature SQL of {self.spec.name} returned {len(found)} rows for {len(ids)}")
        # Back in request order (ids are unique: the rules refuse duplicates).
        position = {row[0]: row for row in found}
        if position.keys() != set(ids):
            raise RuntimeError(f"feature SQL of {self.spec.name} returned other ids than the request's")
        if len(found) > 1:
            found = [position[i] for i in ids]
        return FeatureRows(names, rows=found)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "TRUE" if value else "FALSE"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return "'" + value.replace("'", "''") + "'"
    if type(value) is float:
        return f"'{value!r}'"  # cast by the statement's parameter type; also inf
    return f"'{value.isoformat()}'"  # datetime (UTC) or date


def _literals(values: list[Any]) -> str | None:
    """SQL literals for typed request values (None if a string holds a NUL byte: the Arrow path then)."""
    if any(type(v) is str and "\x00" in v for v in values):
        return None
    return ", ".join(_literal(v) for v in values)


def compute_features(request: TypedRequest, spec: PipelineSpec, snapshot: Path) -> pd.DataFrame:
    """Run the pipeline's feature SQL on the request rows with the online snapshot as context."""
    return FeatureEngine(spec, snapshot).features(request).frame()
