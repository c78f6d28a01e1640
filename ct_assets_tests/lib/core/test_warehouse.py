"""Partition writes replace, never duplicate, and a failed write leaves the old partition whole."""

from __future__ import annotations

import pytest

from ct_assets.lib.core.warehouse import replace_partition, transaction


def _rows(con, key: str) -> list[tuple]:
    return con.execute("SELECT id, v FROM s.t WHERE _partition_key = ? ORDER BY id", [key]).fetchall()


def test_rewriting_a_partition_replaces_it(warehouse) -> None:
    for _ in range(3):
        with transaction(warehouse):
            replace_partition(warehouse, "s", "t", "2013-01-01", "SELECT range AS id, 'a' AS v FROM range(5)")
    with transaction(warehouse):
        replace_partition(warehouse, "s", "t", "2013-01-02", "SELECT 9 AS id, 'b' AS v")
    assert len(_rows(warehouse, "2013-01-01")) == 5
    assert _rows(warehouse, "2013-01-02") == [(9, "b")]


def test_a_crash_mid_write_keeps_the_previous_partition(warehouse) -> None:
    with transaction(warehouse):
        replace_partition(warehouse, "s", "t", "k", "SELECT range AS id, 'old' AS v FROM range(3)")
    with pytest.raises(RuntimeError), transaction(warehouse):
        replace_partition(warehouse, "s", "t", "k", "SELECT range AS id, 'new' AS v FROM range(7)")
        raise RuntimeError("killed after the delete and insert, before commit")
    assert _rows(warehouse, "k") == [(0, "old"), (1, "old"), (2, "old")]


def test_new_columns_are_added_without_losing_old_partitions(warehouse) -> None:
    with transaction(warehouse):
        replace_partition(warehouse, "s", "t", "a", "SELECT 1 AS id, 'x' AS v")
    with transaction(warehouse):
        replace_partition(warehouse, "s", "t", "b", "SELECT 2 AS id, 'y' AS v, 3.5 AS w")
    assert warehouse.execute("SELECT id, w FROM s.t ORDER BY id").fetchall() == [
        (1, None),
        (2, 3.5),
    ]


def test_unsafe_partition_keys_are_refused(warehouse) -> None:
    with pytest.raises(ValueError, match="unsafe partition key"):
        replace_partition(warehouse, "s", "t", "x'; DROP TABLE s.t; --", "SELECT 1 AS id")
