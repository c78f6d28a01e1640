"""The serving path's compiled request rules agree with the training path's pandera model.

Each case is one request row (a real flight, then broken on purpose, or edge values that pass).
The reference is the uncompiled path: a JSON type gate, DuckDB's
TRY_CAST to the warehouse types, then `validation.find_bad_rows` (the pandera model built from the
spec). `RequestRules` must accept exactly the rows the reference accepts, with the same typed values,
and refuse the others with a message naming the row and field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.data.ingest import DUCKDB_TYPES
from ct_assets.lib.data.validation import find_bad_rows
from ct_assets.lib.serving.request_rules import TIMESTAMP_WINDOW, RequestError, RequestRules
from ct_assets_tests.conftest import write_flights_variant

GOOD = {
    "carrier": "B6",
    "day": 8,
    "dest": "BQN",
    "distance": 1576,
    "flight": 727,
    "flight_id": "2013-01-08/B6727/JFK",
    "hour": 23,
    "minute": 59,
    "month": 1,
    "origin": "JFK",
    "sched_arr_time": 437,
    "sched_dep_at": "2013-01-09T04:59:00.000Z",
    "sched_dep_time": 2359,
    "tailnum": "N563JB",
    "time_hour": "2013-01-09T04:00:00.000Z",
    "year": 2013,
}

# (field, value): each replaces one field of the good row.
CHANGES: list[tuple[str, Any]] = [
    # ranges, at and beyond the bounds
    ("distance", 1),
    ("distance", 0),
    ("distance", 6000),
    ("distance", 6001),
    ("distance", -5),
    ("month", 12),
    ("month", 13),
    ("hour", 0),
    ("hour", 24),
    ("minute", 59),
    ("minute", 60),
    ("year", 2012),
    ("sched_dep_time", 2359),
    ("sched_dep_time", 2400),
    ("flight", 9999),
    ("flight", 10000),
    # allowed values
    ("carrier", "AA"),
    ("carrier", "ZZ"),
    ("carrier", "b6"),
    ("origin", "LGA"),
    ("origin", "BOS"),
    ("dest", "ANYWHERE"),
    # nulls: nullable and not
    ("tailnum", None),
    ("carrier", None),
    ("distance", None),
    ("sched_dep_at", None),
    ("flight_id", None),
    # JSON types
    ("distance", 1576.0),
    ("distance", 1576.5),
    ("distance", "1576"),
    ("distance", True),
    ("distance", 1e308),
    ("distance", 2**70),
    ("distance", float("nan")),
    ("distance", float("inf")),
    ("carrier", 6),
    ("tailnum", 12),
    ("tailnum", ""),
    ("flight_id", "x'; DROP TABLE planes; --"),
    ("tailnum", "N\u00e9\u4e2d"),
    ("dest", []),
    ("dest", {}),
    # timestamps: forms both readers agree on, forms only one reads, and out of range
    ("sched_dep_at", "2013-01-09 04:59:00"),
    ("sched_dep_at", "2013-01-09T04:59"),
    ("sched_dep_at", "2013-01-09"),
    ("sched_dep_at", "2013-01-09T04:59:00+01:00"),
    ("sched_dep_at", "2013-01-09T04:59:00-0500"),
    ("sched_dep_at", "2013-01-09T04:59:00.1234567Z"),
    ("sched_dep_at", "2013-01-09T04"),
    ("sched_dep_at", "20130109T045900"),
    ("sched_dep_at", "2013-W02-3"),
    ("sched_dep_at", "2013-1-9"),
    ("sched_dep_at", "2013-01-09T24:00:00"),
    ("sched_dep_at", "2013-02-30"),
    ("sched_dep_at", " 2013-01-09"),
    ("sched_dep_at", "2013-01-09T04:59:00 UTC"),
    ("sched_dep_at", "2013-01-09T04:59:00,5Z"),
    ("sched_dep_at", "yesterday"),
    ("sched_dep_at", 1357707540),
    ("sched_dep_at", "1500-01-01T00:00:00Z"),
    ("sched_dep_at", "9999-12-31T23:59:59Z"),
    ("sched_dep_at", "1677-09-21T00:12:44Z"),
    ("time_hour", "2262-04-11T23:47:16Z"),
]


def _json_type_ok(value: Any, kind: str) -> bool:
    """The JSON type gate serving applied before (strings for text and times, numbers for numbers)."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("timestamp", "date"):
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return isinstance(value, bool)


def reference(row: dict[str, Any], spec: PipelineSpec) -> dict[str, Any] | None:
    """The pandera path: typed values if the row passes, None if it is refused."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    typed: dict[str, Any] = {}
    for name, column in spec.columns.items():
        if name in spec.post_event_columns:
            typed[name] = None
            continue
        value = row[name]
        if value is not None and not _json_type_ok(value, column.type):
            return None
        if value is None or (isinstance(value, float) and value != value):
            typed[name] = None
            continue
        text = value if isinstance(value, str) else repr(int(value) if column.type == "integer" else value)
        cast = con.execute(f"SELECT TRY_CAST(? AS {DUCKDB_TYPES[column.type]})", [text]).fetchone()[0]
        if cast is None:  # did not parse: a cast error (quarantined in the training path)
            return None
        typed[name] = cast
    con.close()
    frame = pd.DataFrame([typed])
    for name, column in spec.columns.items():
        if column.type == "timestamp":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif column.type == "integer":
            frame[name] = frame[name].astype("Int64")
        elif column.type == "float":
            frame[name] = frame[name].astype("float64")
    frame["_cast_errors"] = None
    far = (pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))
    try:
        bad = find_bad_rows(frame[[*spec.columns, "_cast_errors"]], spec, far)
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return None
    return None if bad else {k: v for k, v in typed.items() if k not in spec.post_event_columns}


def ours(row: dict[str, Any], spec: PipelineSpec) -> dict[str, Any] | None:
    try:
        columns = RequestRules(spec).check_rows([row], 10)
    except RequestError as err:
        assert str(err).startswith("row 0: "), err
        return None
    return {name: values[0] for name, values in columns.items()}


@pytest.mark.parametrize(("field", "value"), [(None, None), *CHANGES], ids=repr)
def test_rules_agree_with_the_pandera_model(
    flights_spec: PipelineSpec, field: str | None, value: Any
) -> None:
    row = dict(GOOD)
    if field is not None:
        row[field] = value
    expected, got = reference(row, flights_spec), ours(row, flights_spec)
    assert (expected is None) == (got is None), (row, expected, got)
    if field is None:
        assert got is not None  # the good row passes both
    if got is not None:
        assert got == expected


def test_refusals_name_row_and_field(flights_spec: PipelineSpec) -> None:
    rules = RequestRules(flights_spec)
    rows = [dict(GOOD, flight_id=f"id{i}") for i in range(5)]
    rows[3]["distance"] = 99999
    rows[4]["sched_dep_at"] = "2013-01-09T04"
    with pytest.raises(RequestError) as error:
        rules.check_rows(rows, 10)
    assert str(error.value) == "row 4: field 'sched_dep_at' must be timestamp, got '2013-01-09T04'"
    rows[4]["sched_dep_at"] = GOOD["sched_dep_at"]
    rows[1]["carrier"] = "ZZ"
    with pytest.raises(RequestError) as error:
        rules.check_rows(rows, 10)
    assert str(error.value) == (
        "row 1: carrier 'ZZ' is not an allowed value; row 3: distance 99999 is above the maximum 6000"
    )
    rows = [dict(GOOD), dict(GOOD), dict(GOOD, flight_id="other")]
    with pytest.raises(RequestError, match=r"row 0: flight_id .* appears more than once.*; row 1: "):
        rules.check_rows(rows, 10)
    with pytest.raises(RequestError, match=r"^row 0: field 'carrier' must be string, got true$"):
        rules.check_rows([dict(GOOD, carrier=True)], 10)  # JSON's spelling of what the caller sent


def test_timestamps_outside_the_accepted_range_are_refused_in_a_request_s_words(
    flights_spec: PipelineSpec,
) -> None:
    """The spec's timestamp column and any other: before 1677 or after 2262 is a readable refusal
    (not a TypeError while wording the message, which the service would answer with a 500) that names
    the range the service accepts, not a partition window."""
    rules = RequestRules(flights_spec)
    accepted = "the timestamps the service accepts, from 1677-09-21 00:12:43.145225 to before 2262-04-11"
    for field in ("time_hour", "sched_dep_at"):
        for value in ("0001-01-01T00:00:00", "1600-01-01T00:00:00Z", "2300-01-01T00:00:00Z"):
            with pytest.raises(RequestError) as error:
                rules.check_rows([dict(GOOD, **{field: value})], 10)
            message = str(error.value)
            assert message.startswith(f"row 0: {field} ") and accepted in message, message
            assert "partition" not in message and "supported range" not in message
    with pytest.raises(RequestError) as error:
        rules.check_rows([dict(GOOD, sched_dep_at="0001-01-01T00:00:00")], 10)
    assert str(error.value) == (
        "row 0: sched_dep_at 0001-01-01 00:00:00+00:00 is outside the timestamps the service accepts, "
        "from 1677-09-21 00:12:43.145225 to before 2262-04-11 23:47:16.854775 UTC"
    )


def test_a_repeated_entity_id_is_repeated_in_the_request(flights_spec: PipelineSpec) -> None:
    rules = RequestRules(flights_spec)
    with pytest.raises(RequestError) as error:
        rules.check_rows([dict(GOOD), dict(GOOD)], 10)
    repeated = f"flight_id {GOOD['flight_id']!r} appears more than once in the request"
    assert str(error.value) == f"row 0: {repeated}; row 1: {repeated}"


def test_columns_and_rows_give_the_same_values(flights_spec: PipelineSpec) -> None:
    rules = RequestRules(flights_spec)
    rows = [dict(GOOD, flight_id=f"id{i}", tailnum=None if i % 2 else "N1") for i in range(6)]
    columns = {name: [row[name] for row in rows] for name in GOOD}
    assert rules.check_columns(columns, 10) == rules.check_rows(rows, 10)
    with pytest.raises(RequestError, match=r"row 0: missing fields \['year'\]"):
        rules.check_columns({k: v for k, v in columns.items() if k != "year"}, 10)
    with pytest.raises(RequestError, match="larger than the limit of 5"):
        rules.check_columns(columns, 5)
    assert TIMESTAMP_WINDOW[0] < datetime.fromisoformat("2013-01-01T00:00:00+00:00") < TIMESTAMP_WINDOW[1]


def unbounded_float_spec(folder: Any) -> PipelineSpec:
    """Flights with `distance` a float without bounds: no range rule catches an infinity."""
    return load_spec(
        write_flights_variant(
            folder,
            {"columns.distance.type": "float", "columns.distance.min": None, "columns.distance.max": None},
        )
    )


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 1e308, -1e308], ids=repr)
def test_a_float_must_be_finite_on_both_paths(tmp_path: Any, value: float) -> None:
    spec = unbounded_float_spec(tmp_path)
    row = {**GOOD, "distance": value}
    expected, got = reference(row, spec), ours(row, spec)
    assert (expected is None) == (got is None) == (abs(value) == float("inf"))
    if got is None:
        with pytest.raises(RequestError, match=f"row 0: distance {value} is not a finite number"):
            RequestRules(spec).check_rows([row], 10)
