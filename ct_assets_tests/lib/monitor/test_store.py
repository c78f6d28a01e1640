"""The monitoring store's declared tables on a real DuckDB file: an all-null first write keeps the
declared types, a column the declaration does not know is refused, and a table an untyped write
created (NULL-typed columns) is repaired the next time it is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.warehouse import open_connection, replace_partition, table_columns, transaction
from ct_assets.lib.monitor import store


def test_an_all_null_first_write_keeps_the_declared_types(tmp_path: Path) -> None:
    con = open_connection(tmp_path / "w.duckdb")
    nulls = pd.DataFrame([{"column": "a", "kind": "numeric", "rows": 5, "hellinger": None, "skipped": None}])
    with transaction(con):
        store.write_partition(con, "p", "drift_columns", "2024-01-01", nulls)
    values = pd.DataFrame([{"column": "a", "kind": "numeric", "rows": 5, "hellinger": 0.2, "skipped": "why"}])
    with transaction(con):
        store.write_partition(con, "p", "drift_columns", "2024-01-02", values)
    assert table_columns(con, "p", "drift_columns")["skipped"] == "VARCHAR"
    assert con.execute("SELECT count(*), count(skipped), sum(hellinger) FROM p.drift_columns").fetchall() == [
        (2, 1, 0.2)
    ]
    with pytest.raises(ValueError, match="declares no column"):
        store.write_partition(con, "p", "drift_columns", "2024-01-03", values.assign(extra=1))
    con.close()


def test_a_table_an_untyped_write_created_is_repaired_on_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    con = open_connection(path)
    legacy = pd.DataFrame(
        [{"champion_version": "v0001", "rows": 300, "drift_share": 0.1, "skipped": None, "label_rate": None}]
    )
    con.register("_legacy", legacy)
    with transaction(con):  # a table typed by its first frame
        replace_partition(con, "p", "drift_summary", "2024-01-01", "SELECT * FROM _legacy")
    con.unregister("_legacy")
    assert table_columns(con, "p", "drift_summary")["skipped"] == '"NULL"'
    con.close()

    con = open_connection(path)
    skipped = pd.DataFrame([{"champion_version": "v0001", "rows": 40, "skipped": "only 40 rows"}])
    with transaction(con):
        store.write_partition(con, "p", "drift_summary", "2024-01-02", skipped)
    columns = table_columns(con, "p", "drift_summary")
    assert {c: columns[c] for c in store.DRIFT_SUMMARY} == store.DRIFT_SUMMARY
    assert con.execute(
        "SELECT _partition_key, skipped, drift_share FROM p.drift_summary ORDER BY 1"
    ).fetchall() == [
        ("2024-01-01", None, 0.1),
        ("2024-01-02", "only 40 rows", None),
    ]
    assert store.ensure_table(con, "p", "drift_summary") == []  # repaired once, matches from then on
    con.close()
