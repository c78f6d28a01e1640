"""Helpers of the Arrow request tests: a request checked both ways, by the JSON path
(`RequestRules.check_columns`) and by the Arrow path (`arrow_request_check.check_table`), so that a
test can compare their typed values or their messages."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.serving.arrow_column_types import ARROW_TYPES
from ct_assets.lib.serving.arrow_request_check import check_table
from ct_assets.lib.serving.request_rules import RequestError, RequestRules
from ct_assets_tests.conftest import FLIGHTS_SPEC
from ct_assets_tests.lib.serving.test_request_rules import GOOD

KINDS = {name: column.type for name, column in load_spec(FLIGHTS_SPEC).columns.items()}
# Arrow types a field of each kind takes (the module's contract, stated independently here).
TAKES = {
    "string": pa.types.is_string,
    "integer": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "float": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "boolean": pa.types.is_boolean,
    "timestamp": lambda t: pa.types.is_timestamp(t) or pa.types.is_string(t),
    "date": lambda t: pa.types.is_date(t) or pa.types.is_string(t),
}


def arrow_column(value: Any, kind: str) -> pa.Array | None:
    """One-row column: pyarrow's inferred type, the spec's type for a null; None if no Arrow form."""
    try:
        array = pa.array([value])
    except (pa.ArrowException, OverflowError):
        return None
    return pa.array([value], type=ARROW_TYPES[kind]) if pa.types.is_null(array.type) else array


def expressible(field: str, value: Any) -> bool:
    array = arrow_column(value, KINDS[field])
    return array is not None and TAKES[KINDS[field]](array.type)


def by_json(rules: RequestRules, columns: dict[str, list[Any]], max_rows: int = 10) -> Any:
    """The JSON path's typed columns, or its RequestError message."""
    try:
        return rules.check_columns(columns, max_rows)
    except RequestError as err:
        return str(err)


def by_arrow(rules: RequestRules, table: pa.Table, max_rows: int = 10) -> Any:
    """The Arrow path's typed columns (checking the result's shape), or its RequestError message."""
    try:
        result = check_table(rules, table, max_rows)
    except RequestError as err:
        return str(err)
    assert result.column_names == rules.names
    kinds = {rule.name: rule.kind for rule in rules.fields}
    for name, column in zip(result.column_names, result.columns, strict=True):
        assert column.type == ARROW_TYPES[kinds[name]], name
        assert column.num_chunks == 1, name
    return result.to_pydict()


def table_of(rules: RequestRules, columns: dict[str, list[Any]], **arrays: pa.Array) -> pa.Table:
    """`columns` as Arrow: the given arrays, else pyarrow's inferred type (the spec's for nulls)."""
    kinds = {name: column.type for name, column in rules.spec.columns.items()}
    table = {}
    for name, values in columns.items():
        if name in arrays:
            table[name] = arrays[name]
            continue
        array = pa.array(values)
        table[name] = (
            pa.array(values, type=ARROW_TYPES[kinds[name]]) if pa.types.is_null(array.type) else array
        )
    return pa.table(table)


def assert_refused(
    rules: RequestRules, good: dict[str, Any], field: str, array: pa.Array, message: str
) -> None:
    """The good row with one field's column replaced by `array` is refused with `message` (a regex)."""
    columns = {name: [v] for name, v in good.items()}
    got = by_arrow(rules, table_of(rules, columns, **{field: array}))
    assert isinstance(got, str) and re.search(message, got), got


def rows_named(message: str) -> list[int]:
    return [int(row) for row in re.findall(r"row (\d+):", message)]


def many(count: int) -> dict[str, list[Any]]:
    """`count` good rows as column JSON, each with its own flight_id."""
    columns = {name: [value] * count for name, value in GOOD.items()}
    columns["flight_id"] = [f"2013-01-08/B6{i}/JFK" for i in range(count)]
    return columns
