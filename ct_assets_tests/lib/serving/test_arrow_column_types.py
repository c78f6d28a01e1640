"""Arrow columns read as their field's type: accepted and refused as the JSON check
(`RequestRules.check_columns`) accepts and refuses the same values, with the same typed values and
the same messages.

Each case of `test_request_rules.CHANGES` whose value has an Arrow column of a type the field can
take (pyarrow's inferred type, or the spec's type for a null) is checked both ways; the other cases
are type errors, refused naming the field. The field types the flights spec does not request
(float, date, boolean) are checked on a spec variant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.serving.arrow_column_types import _EXPECTED
from ct_assets.lib.serving.request_rules import RequestRules
from ct_assets_tests.conftest import write_flights_variant
from ct_assets_tests.lib.serving.arrow_vs_json import (
    KINDS,
    arrow_column,
    assert_refused,
    by_arrow,
    by_json,
    expressible,
    rows_named,
    table_of,
)
from ct_assets_tests.lib.serving.test_request_rules import CHANGES, GOOD

TYPED_CASES = [(f, v) for f, v in CHANGES if expressible(f, v)]
TYPE_ERROR_CASES = [(f, v) for f, v in CHANGES if not expressible(f, v)]


def case_id(value: Any) -> str:
    """A case's id that is the same in every process (an Arrow array's repr holds its address)."""
    if isinstance(value, pa.Array):
        return f"{value.type}{''.join(value.to_string().split())}"
    return repr(value)


@pytest.mark.parametrize(("field", "value"), [(None, None), *TYPED_CASES], ids=repr)
def test_one_row_agrees_with_the_json_path(rules: RequestRules, field: str | None, value: Any) -> None:
    row = dict(GOOD)
    if field is not None:
        row[field] = value
    columns = {name: [v] for name, v in row.items()}
    table = pa.table({name: arrow_column(v, KINDS[name]) for name, v in row.items()})
    expected, got = by_json(rules, columns), by_arrow(rules, table)
    assert type(expected) is type(got), (expected, got)
    # Same typed values when both accept; the same message (row and field) when both refuse.
    assert got == expected
    if isinstance(got, str):
        assert rows_named(got) == [0]
        assert field in got
    if field is None:
        assert isinstance(got, dict)


def test_the_cases_cover_both_outcomes() -> None:
    """The comparison above means something: it sees both accepted and refused values."""
    assert len(TYPED_CASES) > 50
    assert {
        ("distance", 1576.5),
        ("distance", 1e308),
        ("carrier", None),
        ("sched_dep_at", "yesterday"),
    } <= set(TYPED_CASES)
    assert ("distance", "1576") in TYPE_ERROR_CASES and ("dest", {}) in TYPE_ERROR_CASES


@pytest.mark.parametrize(("field", "value"), TYPE_ERROR_CASES, ids=repr)
def test_values_without_a_typed_column_are_type_errors(rules: RequestRules, field: str, value: Any) -> None:
    columns = {name: [v] for name, v in dict(GOOD, **{field: value}).items()}
    assert isinstance(by_json(rules, columns), str)  # the JSON path refuses them too
    array = arrow_column(value, KINDS[field])
    if array is None:  # 2**70: no Arrow integer holds it (uint64 past int64 is tested below)
        return
    got = by_arrow(rules, table_of(rules, columns, **{field: array}))
    assert got == (
        f"field {field!r} must be {KINDS[field]} (Arrow {_EXPECTED[KINDS[field]]}), "
        f"got an Arrow column of type {array.type}"
    )


@pytest.mark.parametrize(
    ("field", "array", "message"),
    [
        (
            "distance",
            pa.array(["1576"]),
            "field 'distance' must be integer .* got an Arrow column of type string",
        ),
        ("month", pa.array([True]), "field 'month' must be integer .* type bool"),
        ("distance", pa.array([Decimal("1576")]), "field 'distance' must be integer .* type decimal"),
        ("carrier", pa.array([True]), "field 'carrier' must be string .* type bool"),
        ("carrier", pa.array([b"B6"]), "field 'carrier' must be string .* type binary"),
        ("dest", pa.array([["BQN"]]), "field 'dest' must be string .* type list<item: string>"),
        ("sched_dep_at", pa.array([1357707540]), "field 'sched_dep_at' must be timestamp .* type int64"),
        ("sched_dep_at", pa.array([date(2013, 1, 9)]), "field 'sched_dep_at' must be timestamp .* date32"),
        # row-level: named by row, worded as FieldRule.convert words the JSON value
        ("distance", pa.array([1576.5]), r"^row 0: field 'distance' must be integer, got 1576\.5$"),
        ("distance", pa.array([np.nan]), r"^row 0: field 'distance' must be integer, got nan$"),
        ("distance", pa.array([2.0**63]), r"^row 0: field 'distance' must be integer, got 9\.2\d+e\+18$"),
        (
            "distance",
            pa.array([2**64 - 1], pa.uint64()),
            r"^row 0: field 'distance' must be integer, got 18446744073709551615$",
        ),
        ("distance", pa.array([2**63], pa.uint64()), r"^row 0: field 'distance' must be integer, got 9223"),
        (
            "sched_dep_at",
            pa.array([10**13], pa.timestamp("s")),
            r"^row 0: field 'sched_dep_at' must be timestamp, got timestamp\[s\] value 10000000000000$",
        ),
    ],
    ids=case_id,
)
def test_type_errors_name_the_field(rules: RequestRules, field: str, array: pa.Array, message: str) -> None:
    assert_refused(rules, GOOD, field, array, message)


def test_integer_edges_pass_the_type_check(rules: RequestRules) -> None:
    """Just inside int64 (as uint64, as float) is typed, then refused by the range rule only."""
    columns = {name: [v] for name, v in GOOD.items()}
    for array, shown in [
        (pa.array([2**63 - 1], pa.uint64()), str(2**63 - 1)),
        (pa.array([-(2.0**63)]), str(-(2**63))),
    ]:
        got = by_arrow(rules, table_of(rules, columns, distance=array))
        assert isinstance(got, str) and got.startswith(f"row 0: distance {shown} is "), got
    for array in (pa.array([1576], pa.uint64()), pa.array([1576], pa.int16())):
        assert by_arrow(rules, table_of(rules, columns, distance=array)) == by_json(rules, columns)
    floats = pa.array([1576.0], pa.float32())
    assert by_arrow(rules, table_of(rules, columns, distance=floats)) == by_json(rules, columns)


def test_string_encodings_and_null_columns(rules: RequestRules) -> None:
    columns = {name: [v] for name, v in GOOD.items()}
    expected = by_json(rules, columns)
    for array in (
        pa.array(["B6"], pa.large_string()),
        pa.array(["B6"], pa.string_view()),
        pa.array(["B6"]).dictionary_encode(),
    ):
        assert by_arrow(rules, table_of(rules, columns, carrier=array)) == expected
    # A column of Arrow's null type: fine where nulls are, "required" where not, as in JSON.
    nulls = pa.nulls(1)
    assert by_arrow(rules, table_of(rules, columns, tailnum=nulls)) == by_json(
        rules, {**columns, "tailnum": [None]}
    )
    assert by_arrow(rules, table_of(rules, columns, carrier=nulls)) == "row 0: field 'carrier' is required"


@pytest.mark.parametrize(
    "text",
    [
        "2013-01-09T04:59:00Z",
        "2013-01-09T04:59:00.123456789Z",
        "1969-12-31T23:59:59.999998500Z",  # before 1970: nanoseconds floor, as digits truncate
        "1677-09-21T00:12:43.145225Z",  # the window's first instant
        "1677-09-21T00:12:43.145224Z",  # just before it
        "2262-04-11T23:47:16.854774Z",
        "2262-04-11T23:47:16.854775Z",  # the first instant past it
        "1500-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_timestamp_units_and_zones(rules: RequestRules, text: str) -> None:
    """A timestamp column of any unit and zone gives what the JSON path gives for the ISO string."""
    columns = {name: [v] for name, v in GOOD.items()}
    expected = by_json(rules, {**columns, "sched_dep_at": [text]})
    instant = np.datetime64(text.removesuffix("Z"), "ns" if "." in text and len(text) > 28 else "us")
    arrays = [pa.array([int(instant.astype("datetime64[us]").astype(int))], pa.timestamp("us", tz="UTC"))]
    if instant.dtype == np.dtype("datetime64[ns]"):
        arrays.append(pa.array([int(instant.astype(int))], pa.timestamp("ns")))
    elif text.endswith(":00Z") and 1678 <= int(text[:4]) <= 2261:
        seconds = int(instant.astype("datetime64[s]").astype(int))
        arrays += [
            pa.array([seconds], pa.timestamp("s")),
            pa.array([seconds * 1000], pa.timestamp("ms", tz="America/New_York")),
            pa.array([seconds * 10**9], pa.timestamp("ns", tz="+05:30")),
        ]
    for array in arrays:
        assert by_arrow(rules, table_of(rules, columns, sched_dep_at=array)) == expected, array.type
    if text.startswith("2013"):
        assert isinstance(expected, dict)
    if text.startswith(("1500", "9999", "1677-09-21T00:12:43.145224")):
        assert "outside the timestamps the service accepts" in expected


# --- field types the flights spec does not request: float, date, boolean (a spec variant) ---

VARIANT_GOOD = {**GOOD, "dep_delay": 5.0, "booked_on": "2013-01-01", "codeshare": False}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> RequestRules:
    path = write_flights_variant(
        tmp_path_factory.mktemp("variant"),
        {
            "post_event_columns": ["dep_time", "arr_time", "arr_delay", "air_time"],
            "columns.dep_delay.nullable": False,
            "columns.booked_on": {"type": "date"},
            "columns.codeshare": {"type": "boolean", "nullable": False},
        },
    )
    rules = RequestRules(load_spec(path))
    assert set(rules.names) == set(VARIANT_GOOD)
    return rules


@pytest.mark.parametrize(
    ("field", "value", "array"),
    [
        ("dep_delay", 5, None),
        ("dep_delay", 5.5, pa.array([5.5], pa.float32())),
        ("dep_delay", 7, pa.array([7], pa.uint8())),
        ("dep_delay", -120, None),
        ("dep_delay", -121.0, None),
        ("dep_delay", 1500.5, None),
        ("dep_delay", 2**53 + 1, None),
        ("dep_delay", float("nan"), None),
        ("dep_delay", float("inf"), None),
        ("dep_delay", None, None),
        ("dep_delay", None, pa.array([np.nan], pa.float16())),
        ("booked_on", "2013-01-09", None),
        ("booked_on", "2013-01-09", pa.array([date(2013, 1, 9)], pa.date32())),
        ("booked_on", "2013-01-09", pa.array([date(2013, 1, 9)], pa.date64())),
        ("booked_on", "0001-01-01", pa.array([date(1, 1, 1)], pa.date32())),
        ("booked_on", "2013-02-30", None),
        ("booked_on", "2013-01-09T04:59", None),
        ("booked_on", None, None),
        ("codeshare", True, None),
        ("codeshare", None, None),
    ],
    ids=case_id,
)
def test_float_date_and_boolean_fields_agree(
    variant: RequestRules, field: str, value: Any, array: pa.Array | None
) -> None:
    kinds = {name: column.type for name, column in variant.spec.columns.items()}
    row = {**VARIANT_GOOD, field: value}
    columns = {name: [v] for name, v in row.items()}
    if array is None:
        array = arrow_column(value, kinds[field])
    table = pa.table(
        {name: array if name == field else arrow_column(v, kinds[name]) for name, v in row.items()}
    )
    expected, got = by_json(variant, columns), by_arrow(variant, table)
    assert got == expected
    if isinstance(got, str):
        assert rows_named(got) == [0] and field in got


@pytest.mark.parametrize(
    ("field", "array", "message"),
    [
        ("codeshare", pa.array([1]), "field 'codeshare' must be boolean .* type int64"),
        ("dep_delay", pa.array(["5"]), "field 'dep_delay' must be float .* type string"),
        (
            "booked_on",
            pa.array([datetime(2013, 1, 9, tzinfo=UTC)]),
            "field 'booked_on' must be date .* timestamp",
        ),
        ("booked_on", pa.array([1], pa.date64()), "field 'booked_on' must be date .* type date64"),
        (
            "booked_on",
            pa.array([3_000_000], pa.int32()).cast(pa.date32()),
            r"^row 0: field 'booked_on' must be date, got date32\[day\] value 3000000$",
        ),
    ],
    ids=case_id,
)
def test_variant_type_errors(variant: RequestRules, field: str, array: pa.Array, message: str) -> None:
    assert_refused(variant, VARIANT_GOOD, field, array, message)
