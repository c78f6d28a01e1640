"""The check of an Arrow request's table, compared with the JSON check: many rows, bad rows listed
in row order and at most `MAX_PROBLEMS` of them, row-count limits, missing, unknown, repeated and
post-event fields, and dictionary-encoded fields too large once decoded."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ct_assets.lib.serving.arrow_request import BodyTooLarge
from ct_assets.lib.serving.arrow_request_check import check_table
from ct_assets.lib.serving.request_rules import MAX_PROBLEMS, RequestRules
from ct_assets_tests.lib.serving.arrow_vs_json import (
    by_arrow,
    by_json,
    many,
    rows_named,
    table_of,
)


def test_a_thousand_good_rows_pass(rules: RequestRules) -> None:
    columns = many(1000)
    expected = by_json(rules, columns, 1000)
    assert isinstance(expected, dict)
    assert by_arrow(rules, table_of(rules, by_json(rules, columns, 1000)), 1000) == expected
    # as pyarrow infers the JSON values: timestamps as ISO strings
    assert by_arrow(rules, pa.table(columns), 1000) == expected


def test_bad_rows_listed_in_order(rules: RequestRules) -> None:
    columns = many(1000)
    columns["distance"][998] = 99999
    columns["carrier"][17] = "ZZ"
    columns["month"][500] = 13
    expected = by_json(rules, columns, 1000)
    got = by_arrow(rules, pa.table(columns), 1000)
    assert got == expected
    assert rows_named(got) == [17, 500, 998]
    # values not of their type and required nulls: the other phase, same order
    columns = many(1000)
    columns["carrier"][900] = None
    columns["sched_dep_at"][3] = "yesterday"
    columns["distance"][40] = 1576.5
    got = by_arrow(rules, pa.table(columns), 1000)
    assert got == by_json(rules, columns, 1000)
    assert rows_named(got) == [3, 40, 900]


def test_at_most_max_problems_listed(rules: RequestRules) -> None:
    columns = many(100)
    for row in range(0, 60, 2):  # 30 rows, two problems each
        columns["carrier"][row] = None
        columns["hour"][row] = None
    got = by_arrow(rules, pa.table(columns), 100)
    assert got == by_json(rules, columns, 100)
    assert got.count("row ") == MAX_PROBLEMS
    columns = many(100)
    for row in range(5, 95, 3):  # 30 rows out of range
        columns["minute"][row] = 60
    got = by_arrow(rules, pa.table(columns), 100)
    assert got == by_json(rules, columns, 100)
    assert len(rows_named(got)) == MAX_PROBLEMS


def test_row_count_limits(rules: RequestRules) -> None:
    columns = many(11)
    assert by_arrow(rules, pa.table(columns), 10) == by_json(rules, columns, 10)
    assert by_arrow(rules, pa.table(columns), 10) == "batch of 11 rows is larger than the limit of 10"
    empty = pa.table(columns).slice(0, 0)
    assert by_arrow(rules, empty) == "the Arrow table has no rows: send at least one row"
    no_columns = "the Arrow table has no columns: send one column per request field"
    assert by_arrow(rules, pa.table({})) == no_columns


def test_missing_unknown_and_post_event_fields(rules: RequestRules) -> None:
    columns = many(3)
    wrong = {k: v for k, v in columns.items() if k != "year"} | {"colour": ["red"] * 3}
    got = by_arrow(rules, pa.table(wrong))
    assert got == by_json(rules, wrong)
    assert got == "row 0: missing fields ['year']; row 0: unknown fields ['colour']"
    # post-event fields are dropped, whatever they hold
    extra = columns | {"dep_delay": [1.5, None, 3.0], "arr_time": ["late", None, None]}
    assert by_arrow(rules, pa.table(extra)) == by_json(rules, columns)
    doubled = pa.table([pa.array(["a"] * 3), *pa.table(columns).columns], names=["year", *columns])
    assert by_arrow(rules, doubled) == "fields ['year'] appear more than once"


def test_dictionary_fields_that_would_decode_past_the_limit_are_refused(rules: RequestRules) -> None:
    """A dictionary of one 1 MB value used by every row decodes to rows x 1 MB: refused before it is
    decoded; the same field with a short value is read as usual."""
    columns = many(100)
    table = pa.table(columns)
    huge = pa.DictionaryArray.from_arrays(pa.array([0] * 100, pa.int8()), pa.array(["A" * 1_000_000]))
    bloated = table.set_column(table.schema.get_field_index("tailnum"), "tailnum", huge)
    before = pa.total_allocated_bytes()
    with pytest.raises(BodyTooLarge, match=r"dictionary-encoded fields take 100,000,000 bytes once decoded"):
        check_table(rules, bloated, 1_000, max_bytes=64_000_000)
    assert pa.total_allocated_bytes() - before < 1_000_000
    short = pa.DictionaryArray.from_arrays(pa.array([0] * 100, pa.int8()), pa.array(["N563JB"]))
    fine = table.set_column(table.schema.get_field_index("tailnum"), "tailnum", short)
    assert (
        check_table(rules, fine, 1_000, max_bytes=64_000_000).column("tailnum").to_pylist()
        == ["N563JB"] * 100
    )
