"""The Arrow request check accepts and refuses what the JSON check (`RequestRules.check_columns`)
does, with the same typed values and the same messages.

Each case of `test_request_rules.CHANGES` whose value has an Arrow column of a type the field can
take (pyarrow's inferred type, or the spec's type for a null) is checked both ways; the other cases
are type errors, refused naming the field. Multi-row requests, the stream reader, and the field
types the flights spec does not request (float, date, boolean) are checked on their own.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.serving.arrow_request import (
    _EXPECTED,
    ARROW_TYPES,
    MEDIA_TYPE,
    BodyTooLarge,
    check_table,
    encode_rows,
    read_stream,
)
from ct_assets.lib.serving.request_rules import MAX_PROBLEMS, RequestError, RequestRules
from ct_assets_tests.conftest import FLIGHTS_SPEC, write_flights_variant
from ct_assets_tests.lib.serving.test_request_rules import CHANGES, GOOD

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


TYPED_CASES = [(f, v) for f, v in CHANGES if expressible(f, v)]
TYPE_ERROR_CASES = [(f, v) for f, v in CHANGES if not expressible(f, v)]


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


@pytest.fixture(scope="module")
def rules(flights_spec: PipelineSpec) -> RequestRules:
    return RequestRules(flights_spec)


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
    ids=repr,
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
        assert "outside the partition window" in expected


def test_other_timestamp_fields_past_the_window(rules: RequestRules) -> None:
    """time_hour is not the spec's timestamp column: outside the range of representable timestamps
    (either end) it is refused with the same words both ways."""
    columns = {name: [v] for name, v in GOOD.items()}
    for text, when in (
        ("2262-04-11T23:47:17Z", datetime(2262, 4, 11, 23, 47, 17, tzinfo=UTC)),
        ("1600-01-01T00:00:00Z", datetime(1600, 1, 1, tzinfo=UTC)),
    ):
        expected = by_json(rules, {**columns, "time_hour": [text]})
        assert expected.startswith(f"row 0: time_hour {when} is outside the supported range [1677-09-21")
        typed = pa.array([when], pa.timestamp("us", tz="UTC"))
        for array in (pa.array([text]), typed):
            assert by_arrow(rules, table_of(rules, columns, time_hour=array)) == expected


def test_a_thousand_good_rows_pass(rules: RequestRules) -> None:
    columns = many(1000)
    expected = by_json(rules, columns, 1000)
    assert isinstance(expected, dict)
    assert by_arrow(rules, table_of(rules, by_json(rules, columns, 1000)), 1000) == expected
    # as pyarrow infers the JSON values: timestamps as ISO strings
    assert by_arrow(rules, pa.table(columns), 1000) == expected


def test_repeated_ids_name_both_rows(rules: RequestRules) -> None:
    columns = many(1000)
    columns["flight_id"][1] = columns["flight_id"][0]
    expected = by_json(rules, columns, 1000)
    assert by_arrow(rules, pa.table(columns), 1000) == expected
    assert rows_named(expected) == [0, 1] and "appears more than once" in expected


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


def test_a_repeated_id_whose_twin_is_past_the_listed_rows(rules: RequestRules) -> None:
    columns = many(1000)
    for row in range(MAX_PROBLEMS - 1):
        columns["distance"][row] = 0
    columns["flight_id"][MAX_PROBLEMS - 1] = columns["flight_id"][900]
    expected = by_json(rules, columns, 1000)
    assert rows_named(expected) == list(range(MAX_PROBLEMS))
    assert by_arrow(rules, pa.table(columns), 1000) == expected


def test_row_count_limits(rules: RequestRules) -> None:
    columns = many(11)
    assert by_arrow(rules, pa.table(columns), 10) == by_json(rules, columns, 10)
    assert by_arrow(rules, pa.table(columns), 10) == "batch of 11 rows is larger than the limit of 10"
    empty = pa.table(columns).slice(0, 0)
    assert by_arrow(rules, empty) == by_json(rules, {n: [] for n in columns})
    assert by_arrow(rules, empty) == "rows must be a non-empty list of objects"


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


def stream_bytes(table: pa.Table, batch_rows: int | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    return sink.getvalue().to_pybytes()


def test_round_trip_through_a_stream(rules: RequestRules) -> None:
    columns = many(300)
    table = table_of(rules, by_json(rules, columns, 300))
    body = stream_bytes(table, batch_rows=128)
    read = read_stream(body)
    assert read.column("carrier").num_chunks == 3
    assert by_arrow(rules, read, 300) == by_json(rules, columns, 300)
    sink = pa.BufferOutputStream()  # the IPC file format is read too
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    assert read_stream(sink.getvalue().to_pybytes()).equals(table)
    assert MEDIA_TYPE == "application/vnd.apache.arrow.stream"


def test_bodies_that_are_not_arrow_streams(rules: RequestRules) -> None:
    body = stream_bytes(pa.table(many(50)))
    bad_utf8 = pa.Array.from_buffers(
        pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32)), pa.py_buffer(b"\xff\xfe")]
    )
    for junk in [
        b"",
        b'{"columns": {"carrier": ["B6"]}}',
        b"ARROW1\x00\x00garbage",
        body[: len(body) // 2],
        bytes(range(256)) * 4,
        stream_bytes(pa.table({"carrier": bad_utf8})),
    ]:
        with pytest.raises(RequestError, match=r"not a valid Arrow IPC stream|body is empty"):
            read_stream(junk)


def test_encoded_rows_read_back_as_the_json_path_types_them(
    rules: RequestRules, flights_spec: PipelineSpec
) -> None:
    """The client helper's stream (JSON-style rows in) passes the check with the JSON path's values."""
    columns = many(50)
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    body = encode_rows(flights_spec, rows)
    assert by_arrow(rules, read_stream(body), 100) == by_json(rules, columns, 100)


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
    ids=repr,
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
    ids=repr,
)
def test_variant_type_errors(variant: RequestRules, field: str, array: pa.Array, message: str) -> None:
    assert_refused(variant, VARIANT_GOOD, field, array, message)


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
