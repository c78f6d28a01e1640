"""The spec's rules on Arrow columns, worded as the JSON check words them: timestamps past the
representable range, infinite floats, and repeated ids (also one whose twin lies past the listed
rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from ct_assets.lib.serving.request_rules import MAX_PROBLEMS, RequestRules
from ct_assets_tests.lib.serving.arrow_vs_json import (
    by_arrow,
    by_json,
    many,
    rows_named,
    table_of,
)
from ct_assets_tests.lib.serving.test_request_rules import GOOD, unbounded_float_spec


def test_other_timestamp_fields_past_the_window(rules: RequestRules) -> None:
    """time_hour is not the spec's timestamp column: outside the timestamps the service accepts
    (either end) it is refused with the same words both ways."""
    columns = {name: [v] for name, v in GOOD.items()}
    for text, when in (
        ("2262-04-11T23:47:17Z", datetime(2262, 4, 11, 23, 47, 17, tzinfo=UTC)),
        ("1600-01-01T00:00:00Z", datetime(1600, 1, 1, tzinfo=UTC)),
    ):
        expected = by_json(rules, {**columns, "time_hour": [text]})
        assert expected.startswith(f"row 0: time_hour {when} is outside the timestamps the service accepts")
        typed = pa.array([when], pa.timestamp("us", tz="UTC"))
        for array in (pa.array([text]), typed):
            assert by_arrow(rules, table_of(rules, columns, time_hour=array)) == expected


def test_repeated_ids_name_both_rows(rules: RequestRules) -> None:
    columns = many(1000)
    columns["flight_id"][1] = columns["flight_id"][0]
    expected = by_json(rules, columns, 1000)
    assert by_arrow(rules, pa.table(columns), 1000) == expected
    assert rows_named(expected) == [0, 1] and "appears more than once in the request" in expected


def test_a_repeated_id_whose_twin_is_past_the_listed_rows(rules: RequestRules) -> None:
    columns = many(1000)
    for row in range(MAX_PROBLEMS - 1):
        columns["distance"][row] = 0
    columns["flight_id"][MAX_PROBLEMS - 1] = columns["flight_id"][900]
    expected = by_json(rules, columns, 1000)
    assert rows_named(expected) == list(range(MAX_PROBLEMS))
    assert by_arrow(rules, pa.table(columns), 1000) == expected


def test_infinite_floats_are_refused_as_the_json_path_refuses_them(tmp_path: Path) -> None:
    rules = RequestRules(unbounded_float_spec(tmp_path))
    columns = many(20)
    columns["distance"] = [float(d) for d in columns["distance"]]
    columns["distance"][3], columns["distance"][7] = float("inf"), float("-inf")
    expected = by_json(rules, columns, 20)
    assert rows_named(expected) == [3, 7] and "distance inf is not a finite number" in expected
    assert by_arrow(rules, pa.table(columns), 20) == expected
