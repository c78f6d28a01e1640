"""Request parsing: which fields a caller sends, column-oriented JSON turned into rows with errors
that name the fields, the rules compiled once per spec, and `TypedRequest` holding either typed
lists or an Arrow table behind one interface."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.serving.request_parsing import (
    MAX_BATCH_ROWS,
    RequestError,
    TypedRequest,
    request_columns,
    rows_from_columns,
    rules_for,
    validate_request,
)
from ct_assets_tests.conftest import write_flights_variant
from ct_assets_tests.lib.serving.test_request_rules import GOOD


def test_a_caller_sends_every_column_but_the_post_event_ones(flights_spec: PipelineSpec) -> None:
    fields = request_columns(flights_spec)
    assert set(fields) == set(flights_spec.columns) - set(flights_spec.post_event_columns)
    assert "dep_delay" not in fields and "arr_time" not in fields
    assert fields["flight_id"] == "string" and fields["sched_dep_at"] == "timestamp"
    assert fields["distance"] == "integer"
    assert list(fields) == [n for n in flights_spec.columns if n in fields]  # in the spec's order


def test_a_spec_without_post_event_columns_asks_for_every_column(tmp_path: Path) -> None:
    spec = load_spec(write_flights_variant(tmp_path, {"post_event_columns": []}))
    assert list(request_columns(spec)) == list(spec.columns)


def test_columns_become_rows_in_order() -> None:
    assert rows_from_columns({"b": [1, 2, 3], "a": ["x", None, "z"]}) == [
        {"b": 1, "a": "x"},
        {"b": 2, "a": None},
        {"b": 3, "a": "z"},
    ]
    assert rows_from_columns({"a": []}) == []  # no rows: the rules refuse the empty batch later


@pytest.mark.parametrize("body", [[], None, "a", 3, {}, [{"a": 1}]], ids=repr)
def test_columns_that_are_not_an_object_of_lists_are_refused(body: object) -> None:
    with pytest.raises(RequestError, match="columns must be an object mapping each field to a list"):
        rows_from_columns(body)


def test_fields_that_are_not_lists_are_named() -> None:
    with pytest.raises(RequestError) as error:
        rows_from_columns({"a": [1], "b": 2, "c": "xy", "d": {"0": 1}})
    assert str(error.value) == "fields ['b', 'c', 'd'] must be lists of values"


def test_many_bad_fields_are_named_up_to_five() -> None:
    body = {f"f{i}": i for i in range(8)}
    with pytest.raises(RequestError) as error:
        rows_from_columns(body)
    assert str(error.value) == "fields ['f0', 'f1', 'f2', 'f3', 'f4'] and 3 more must be lists of values"


def test_unequal_lengths_are_shown_per_field() -> None:
    with pytest.raises(RequestError) as error:
        rows_from_columns({"a": [1, 2], "b": [1], "c": []})
    assert str(error.value) == "all field lists must have the same length, got {'a': 2, 'b': 1, 'c': 0}"


def test_rules_are_compiled_once_per_spec_object(flights_spec: PipelineSpec, tmp_path: Path) -> None:
    rules = rules_for(flights_spec)
    assert rules_for(flights_spec) is rules and rules.spec is flights_spec
    other = load_spec(write_flights_variant(tmp_path, {}))
    assert rules_for(other) is not rules and rules_for(other).spec is other


def test_rules_follow_the_spec_they_were_asked_for(tmp_path: Path) -> None:
    """A spec with a stricter rule gets its own rules, not the cached ones of an equal-looking spec."""
    loose = load_spec(write_flights_variant(tmp_path / "loose", {}))
    strict = load_spec(write_flights_variant(tmp_path / "strict", {"columns.distance.max": 100}))
    assert len(validate_request([dict(GOOD)], loose)) == 1
    with pytest.raises(RequestError, match="row 0: distance 1576 is above the maximum 100"):
        validate_request([dict(GOOD)], strict)


def test_validated_rows_are_typed_per_field(flights_spec: PipelineSpec) -> None:
    rows = [dict(GOOD, flight_id=f"f{i}", tailnum=None if i else "N1") for i in range(3)]
    request = validate_request(rows, flights_spec)
    assert len(request) == 3 and "flight_id" in request and "dep_delay" not in request
    assert request.column("flight_id") == ["f0", "f1", "f2"]
    assert request.column("tailnum") == ["N1", None, None]
    assert request.column("sched_dep_at")[0] == datetime(2013, 1, 9, 4, 59, tzinfo=UTC)
    assert request.values("distance") == [1576] * 3  # a list as it came: no Arrow conversion
    assert request.arrow_column("distance").to_pylist() == [1576] * 3
    with pytest.raises(KeyError):
        request.column("gate")


def test_a_request_over_the_batch_limit_is_refused_with_both_numbers(flights_spec: PipelineSpec) -> None:
    rows = [dict(GOOD, flight_id=f"f{i}") for i in range(4)]
    assert len(validate_request(rows, flights_spec, max_rows=4)) == 4
    with pytest.raises(RequestError) as error:
        validate_request(rows, flights_spec, max_rows=3)
    assert str(error.value) == "batch of 4 rows is larger than the limit of 3"
    assert MAX_BATCH_ROWS == 10_000


def test_every_bad_row_is_named_not_only_the_first(flights_spec: PipelineSpec) -> None:
    rows = [dict(GOOD, flight_id=f"f{i}") for i in range(4)]
    del rows[1]["origin"]
    rows[3]["gate"] = "B2"
    with pytest.raises(RequestError) as error:
        validate_request(rows, flights_spec)
    assert str(error.value) == "row 1: missing fields ['origin']; row 3: unknown fields ['gate']"


def test_post_event_fields_sent_by_a_caller_are_ignored(flights_spec: PipelineSpec) -> None:
    request = validate_request([dict(GOOD, dep_delay=12.0, arr_time=455)], flights_spec)
    assert "dep_delay" not in request and "arr_time" not in request


def test_a_typed_request_holds_columns_or_a_table_never_both() -> None:
    table = pa.table({"a": [1]})
    with pytest.raises(ValueError, match="either columns or a table"):
        TypedRequest()
    with pytest.raises(ValueError, match="either columns or a table"):
        TypedRequest({"a": [1]}, table)


def test_a_table_request_gives_arrow_values_and_python_lists_on_demand() -> None:
    table = pa.Table.from_batches(
        [
            pa.record_batch({"id": ["a", "b"], "n": pa.array([1, None], pa.int64())}),
            pa.record_batch({"id": ["c"], "n": pa.array([3], pa.int64())}),
        ]
    )
    request = TypedRequest(table=table)
    assert len(request) == 3 and "id" in request and "x" not in request
    values = request.values("n")
    assert isinstance(values, pa.Array) and values.to_pylist() == [1, None, 3]  # one chunk
    assert request.arrow_column("id").type == pa.string()
    listed = request.column("id")
    assert listed == ["a", "b", "c"] and request.column("id") is listed  # converted once
    with pytest.raises(KeyError):
        request.column("x")


def test_a_column_request_gives_lists_and_arrow_on_demand() -> None:
    request = TypedRequest({"id": ["a", "b"], "t": [datetime(2013, 1, 1, tzinfo=UTC), None]})
    assert len(request) == 2 and "t" in request
    assert request.values("id") == ["a", "b"]
    stamps = request.arrow_column("t")
    assert pa.types.is_timestamp(stamps.type) and stamps.null_count == 1
