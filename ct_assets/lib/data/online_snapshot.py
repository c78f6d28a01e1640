"""The online snapshot: the recent history of each context table, published for serving.

Serving never opens the warehouse. After each partition an asset writes, per context table, the
rows a request may need for its as-of lookups (the last `serving.context_history_hours` of a time
series, all of a reference table) as Parquet files in one folder, swapped in atomically, which the
service only reads. A rerun of an older partition republishes as of the newest partition already
published: the snapshot never goes back in time.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import quote, table_name

if TYPE_CHECKING:
    import duckdb

MANIFEST = "manifest.json"


def publish(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str, folder: Path, history_hours: float
) -> dict[str, int]:
    """Write the snapshot as of the end of `partition_key` into `folder`; returns rows per table."""
    _, end = partition_window(spec.partitions, partition_key)
    start = end - timedelta(hours=history_hours)
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows = {}
    for table, table_spec in spec.context_tables.items():
        source = table_name(spec.name, f"context_{table}")
        where = ""
        if table_spec.kind == "time_series" and table_spec.time_column:
            column = quote(table_spec.time_column)
            where = (
                f" WHERE {column} >= '{start.isoformat()}'::TIMESTAMPTZ "
                f"AND {column} < '{end.isoformat()}'::TIMESTAMPTZ"
            )
        target = staging / f"{table}.parquet"
        con.execute(f"COPY (SELECT * FROM {source}{where}) TO '{target}' (FORMAT parquet)")
        rows[table] = int(con.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchall()[0][0])
    (staging / MANIFEST).write_text(
        json.dumps(
            {
                "pipeline": spec.name,
                "as_of_partition": partition_key,
                "valid_until": end.isoformat(),
                "history_from": start.isoformat(),
                "rows": rows,
                "published_at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
    )
    previous = folder.with_name(f".{folder.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)
    return rows


def publish_forward(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition_key: str, folder: Path, history_hours: float
) -> tuple[str, dict[str, int]]:
    """Publish as of `partition_key`, or as of the published snapshot's partition when that one is
    newer (a rerun of an older partition refreshes the tables but never moves serving and
    monitoring back in time); returns the partition published as of and the rows per table."""
    published = published_as_of(folder)
    as_of = max(partition_key, published) if published is not None else partition_key
    return as_of, publish(con, spec, as_of, folder, history_hours)


def manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"no online snapshot in {folder}: materialize the online_snapshot asset first"
        )
    return json.loads(path.read_text())


def published_as_of(folder: Path) -> str | None:
    """The partition the published snapshot is as of, or None before the first one."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()).get("as_of_partition") if path.exists() else None
