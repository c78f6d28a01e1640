"""The online snapshot: per context table the rows serving may need, swapped in atomically."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.data.landing import context_file
from ct_assets.lib.data.steps import load_context


@pytest.fixture
def context(warehouse, flights_spec: PipelineSpec, flights_landing: Path) -> duckdb.DuckDBPyConnection:
    for table in flights_spec.context_tables:
        load_context(warehouse, flights_spec, table, context_file(flights_landing, flights_spec.name, table))
    return warehouse


def test_time_series_keep_only_the_history_before_the_partition_end(context, flights_spec, tmp_path) -> None:
    folder = tmp_path / "online" / flights_spec.name
    rows = online_snapshot.publish(context, flights_spec, "2013-01-02", folder, history_hours=6)
    assert set(rows) == set(flights_spec.context_tables)
    manifest = online_snapshot.manifest(folder)
    end = datetime.fromisoformat(manifest["valid_until"])
    assert manifest["as_of_partition"] == "2013-01-02" and manifest["rows"] == rows
    assert end - datetime.fromisoformat(manifest["history_from"]) == timedelta(hours=6)
    low, high, count = context.execute(
        f"SELECT min(time_hour), max(time_hour), count(*) FROM read_parquet('{folder}/weather.parquet')"
    ).fetchone()
    assert count == rows["weather"] and 0 < count <= 3 * 6
    assert low >= end - timedelta(hours=6) and high < end


def test_reference_tables_are_published_whole(context, flights_spec, tmp_path) -> None:
    folder = tmp_path / "online"
    rows = online_snapshot.publish(context, flights_spec, "2013-01-02", folder, history_hours=1)
    whole = context.execute(f"SELECT count(*) FROM {flights_spec.name}.context_planes").fetchone()[0]
    assert rows["planes"] == whole > 1000


def test_a_new_snapshot_replaces_the_old_and_leaves_no_staging(context, flights_spec, tmp_path) -> None:
    folder = tmp_path / "online" / "flights"
    assert online_snapshot.published_as_of(folder) is None
    with pytest.raises(FileNotFoundError, match="no online snapshot in"):
        online_snapshot.manifest(folder)
    online_snapshot.publish(context, flights_spec, "2013-01-01", folder, history_hours=24)
    (folder / "stale.parquet").write_bytes(b"old")
    online_snapshot.publish(context, flights_spec, "2013-01-03", folder, history_hours=24)
    assert online_snapshot.published_as_of(folder) == "2013-01-03"
    assert not (folder / "stale.parquet").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["flights"]


def test_an_older_partition_refreshes_the_snapshot_but_never_moves_it_back(
    context, flights_spec, tmp_path
) -> None:
    folder = tmp_path / "online" / flights_spec.name
    assert online_snapshot.publish_forward(context, flights_spec, "2013-01-02", folder, 24)[0] == "2013-01-02"
    context.execute(f"DELETE FROM {flights_spec.name}.context_planes WHERE year < 2000")
    as_of, rows = online_snapshot.publish_forward(context, flights_spec, "2013-01-01", folder, 24)
    assert as_of == online_snapshot.published_as_of(folder) == "2013-01-02"
    whole = context.execute(f"SELECT count(*) FROM {flights_spec.name}.context_planes").fetchone()[0]
    assert rows["planes"] == whole, "republished from the current tables"
    assert online_snapshot.publish_forward(context, flights_spec, "2013-01-03", folder, 24)[0] == "2013-01-03"
