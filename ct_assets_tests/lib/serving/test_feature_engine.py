"""The feature engine on a real warehouse and online snapshot: served features equal the feature
table for a whole day in any request order, the one-row prepared statement agrees with the Arrow
path on awkward values and on a feature group with no row for a flight, a newly published snapshot
is picked up, and a feature SQL that breaks the one-row-per-flight contract is an error, not a
wrong answer."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection, partition_view_sql
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.data.features import FeatureDefinitionError
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.feature_engine import FeatureEngine, FeatureRows, _literal, _literals
from ct_assets.lib.serving.request_parsing import validate_request
from ct_assets_tests.conftest import ingest_days, write_flights_variant

DAYS = ["2013-01-01", "2013-01-02"]


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, flights_spec: PipelineSpec, flights_landing: Path
) -> Iterator[dict[str, Any]]:
    """Two days of features in a real warehouse, and the online snapshot as of the second (read only)."""
    root = tmp_path_factory.mktemp("feature_engine")
    con = open_connection(root / "warehouse.duckdb")
    spec = flights_spec
    ingest_days(con, spec, flights_landing, DAYS)
    snapshot = root / "online"
    online_snapshot.publish(con, spec, DAYS[1], snapshot, history_hours=48)
    try:
        yield {"con": con, "snapshot": snapshot, "engine": FeatureEngine(spec, snapshot), "root": root}
    finally:
        con.close()


def _stored(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, day: str) -> pd.DataFrame:
    return con.execute(partition_view_sql(spec.name, "features", [day])).df().set_index(spec.entity_id)


def _assert_equal_to_table(served: pd.DataFrame, stored: pd.DataFrame, spec: PipelineSpec) -> None:
    columns = list(spec.feature_columns)
    expected = stored.loc[served[spec.entity_id], columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        _nulls_as_none(served[columns]), _nulls_as_none(expected), check_dtype=False
    )


def _nulls_as_none(frame: pd.DataFrame) -> pd.DataFrame:
    """One spelling of null (rows built from Python tuples hold None, the table's floats NaN)."""
    frame = frame.reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None)


def test_a_whole_day_in_shuffled_order_equals_the_feature_table(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 100_000)
    random.Random(7).shuffle(rows)
    request = validate_request(rows, flights_spec)
    features = engine.features(request)
    assert len(features) == len(rows) > 500
    assert features.column(flights_spec.entity_id) == [r[flights_spec.entity_id] for r in rows]
    assert features.names == [flights_spec.entity_id, *flights_spec.feature_columns]
    _assert_equal_to_table(features.frame(), _stored(con, flights_spec, DAYS[1]), flights_spec)


def test_the_request_order_is_kept_whatever_order_the_sql_returns(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 50)
    for order in (rows, rows[::-1], sorted(rows, key=lambda r: r["tailnum"] or "")):
        ids = engine.features(validate_request(order, flights_spec)).column(flights_spec.entity_id)
        assert ids == [r[flights_spec.entity_id] for r in order]


def _awkward(row: dict) -> list[dict]:
    """A real row changed into values the one-row statement must quote or cast right."""
    base = dict(row)
    changes = [
        {"tailnum": None},  # no plane: the plane features are null
        {"tailnum": "N'1\"; DROP TABLE planes; --"},  # quotes in a literal
        {"tailnum": "N\x00563JB"},  # a NUL byte: no SQL literal, the Arrow path
        {"tailnum": "Ñ563JB ✈"},
        {"dest": "B'QN", "distance": 6000},
        {"sched_dep_at": "2013-01-02T23:59:59.999999Z", "time_hour": "2013-01-02T23:00:00Z"},
        {"sched_dep_at": "2013-01-02T17:00:00+05:00"},  # another zone: the same instant as the next
        {"sched_dep_at": "2013-01-02T12:00:00Z"},
    ]
    return [{**base, **change, "flight_id": f"awkward-{n}"} for n, change in enumerate(changes)]


def test_one_row_at_a_time_equals_the_batch_on_awkward_values(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = _awkward(deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 1)[0])
    batch = engine.features(validate_request(rows, flights_spec))
    assert batch.table is not None  # the Arrow path
    singles = [engine.features(validate_request([row], flights_spec)) for row in rows]
    assert [s.table is None for s in singles] == [True, True, False, True, True, True, True, True]
    assert [s.rows[0] for s in singles] == batch.rows
    plane = batch.column("plane_seats")
    assert plane[0] is None and plane[1] is None and plane[2] is None and plane[3] is None
    assert batch.column("tailnum")[1] == "N'1\"; DROP TABLE planes; --"
    assert batch.column("dest")[4] == "B'QN" and batch.column("distance")[4] == 6000.0
    assert batch.rows[6][1:] == batch.rows[7][1:]  # the weather as of the same instant
    assert batch.column("weather_age_minutes")[7] is not None


def test_one_row_features_equal_the_feature_table(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 400)[::37]
    singles = [engine.features(validate_request([row], flights_spec)).rows[0] for row in rows]
    served = FeatureRows(engine.features(validate_request(rows[:1], flights_spec)).names, rows=singles)
    _assert_equal_to_table(served.frame(), _stored(con, flights_spec, DAYS[1]), flights_spec)


def test_threads_each_get_their_own_prepared_statement(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 60)
    expected = engine.features(validate_request(rows, flights_spec)).rows
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(part: int) -> None:
        try:
            mine = rows[part::4]
            results[part] = [engine.features(validate_request([r], flights_spec)).rows[0] for r in mine]
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for part in range(4):
        assert results[part] == expected[part::4]


def test_the_request_table_has_every_spec_column_with_post_event_ones_null(world, flights_spec) -> None:
    con, engine = world["con"], world["engine"]
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 3)
    table = engine.arrow(validate_request(rows, flights_spec))
    assert table.column_names == list(flights_spec.columns)
    for name in flights_spec.post_event_columns:
        assert table.column(name).null_count == 3
    assert table.column("flight_id").to_pylist() == [r["flight_id"] for r in rows]
    assert pa.types.is_timestamp(table.schema.field("sched_dep_at").type)


def test_a_newly_published_snapshot_is_loaded_before_the_next_request(world, flights_spec) -> None:
    """A day-two flight against a day-one snapshot gets older weather than the feature table; once
    the day-two snapshot is published, the same engine (and its prepared statement) gives the table's."""
    con = world["con"]
    folder = world["root"] / "republished"
    online_snapshot.publish(con, flights_spec, DAYS[0], folder, history_hours=48)
    engine = FeatureEngine(flights_spec, folder)
    rows = deploy_steps.request_payload(con, flights_spec, [DAYS[1]], 100_000)
    late = [r for r in rows if r["sched_dep_at"] >= "2013-01-02T20"][:5]
    assert late
    stored = _stored(con, flights_spec, DAYS[1])
    one = validate_request(late[:1], flights_spec)
    before = engine.features(one).column("weather_age_minutes")[0]
    assert before > stored.loc[late[0]["flight_id"], "weather_age_minutes"]
    engine.reload_if_new()  # nothing new: nothing changes
    assert engine.features(one).column("weather_age_minutes")[0] == before
    online_snapshot.publish(con, flights_spec, DAYS[1], folder, history_hours=48)
    engine.reload_if_new()
    _assert_equal_to_table(engine.features(one).frame(), stored, flights_spec)
    _assert_equal_to_table(
        engine.features(validate_request(late, flights_spec)).frame(), stored, flights_spec
    )


def test_the_feature_sql_is_checked_against_the_spec_when_the_engine_starts(world, tmp_path: Path) -> None:
    path = write_flights_variant(tmp_path, {})
    plane = tmp_path / "features" / "plane.sql"
    plane.write_text(plane.read_text().replace("p.seats::DOUBLE AS plane_seats", "p.seats::DOUBLE AS seats"))
    spec = load_spec(path)
    with pytest.raises(FeatureDefinitionError, match=r"missing \['plane_seats'\], not declared \['seats'\]"):
        FeatureEngine(spec, world["snapshot"])


def test_a_feature_sql_returning_two_rows_per_flight_is_an_error(world, tmp_path: Path) -> None:
    path = write_flights_variant(tmp_path, {})
    plane = tmp_path / "features" / "plane.sql"
    text = plane.read_text()
    plane.write_text(f"{text}\nUNION ALL\n{text}")  # every flight twice
    spec = load_spec(path)
    engine = FeatureEngine(spec, world["snapshot"])
    rows = deploy_steps.request_payload(world["con"], spec, [DAYS[1]], 3)
    with pytest.raises(RuntimeError, match=f"feature SQL of {spec.name} returned 2 rows for 1"):
        engine.features(validate_request(rows[:1], spec))
    with pytest.raises(RuntimeError, match=f"feature SQL of {spec.name} returned 6 rows for 3"):
        engine.features(validate_request(rows, spec))


def test_a_feature_group_with_no_row_for_a_flight_gives_nulls_for_one_row_as_in_a_batch(
    world, tmp_path: Path
) -> None:
    path = write_flights_variant(tmp_path, {})
    plane = tmp_path / "features" / "plane.sql"
    plane.write_text(f"{plane.read_text()}\nWHERE p.seats > 1000")  # no plane has that many seats
    spec = load_spec(path)
    engine = FeatureEngine(spec, world["snapshot"])
    rows = deploy_steps.request_payload(world["con"], spec, [DAYS[1]], 3)
    batch = engine.features(validate_request(rows, spec))
    singles = [engine.features(validate_request([row], spec)) for row in rows]
    assert [s.table is None for s in singles] == [True, True, True]  # the prepared statement
    assert [s.rows[0] for s in singles] == batch.rows
    assert batch.column("plane_seats") == [None, None, None] and batch.column("tailnum") == [None] * 3
    assert batch.column("origin") == [row["origin"] for row in rows]


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (0, "0"),
        (-42, "-42"),
        ("it's", "'it''s'"),
        ("", "''"),
        (1.5, "'1.5'"),
        (math.inf, "'inf'"),
        (datetime(2013, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "'2013-01-02T03:04:05.000006+00:00'"),
        (date(2013, 1, 2), "'2013-01-02'"),
    ],
    ids=repr,
)
def test_literals_for_typed_values(value: Any, literal: str) -> None:
    assert _literal(value) == literal


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("a'b''c\\d ✈", "VARCHAR"),
        (-(2**62), "BIGINT"),
        (0.1 + 0.2, "DOUBLE"),
        (1e-300, "DOUBLE"),
        (-0.0, "DOUBLE"),
        (math.inf, "DOUBLE"),
        (-math.inf, "DOUBLE"),
        (True, "BOOLEAN"),
        (datetime(2013, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "TIMESTAMPTZ"),
        (date(1999, 12, 31), "DATE"),
    ],
    ids=repr,
)
def test_a_literal_cast_to_its_type_is_the_value_again(value: Any, kind: str) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    (back,) = con.execute(f"SELECT {_literal(value)}::{kind}").fetchone()
    assert back == value and type(back) is type(value)
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_a_nan_literal_stays_nan() -> None:
    (back,) = duckdb.connect().execute(f"SELECT {_literal(math.nan)}::DOUBLE").fetchone()
    assert math.isnan(back)


def test_a_string_with_a_nul_byte_has_no_literals() -> None:
    assert _literals(["a", 1, None]) == "'a', 1, NULL"
    assert _literals(["a\x00b", 1]) is None
    assert _literals([]) == ""


def test_feature_rows_from_a_table_or_from_tuples_read_the_same() -> None:
    names = ["id", "x"]
    schema = pa.schema([("id", pa.string()), ("x", pa.float64())])
    table = pa.Table.from_batches(
        [
            pa.record_batch({"id": ["a"], "x": [1.0]}, schema=schema),
            pa.record_batch({"id": ["b"], "x": [None]}, schema=schema),
        ]
    )
    from_table, from_rows = (
        FeatureRows(names, table=table),
        FeatureRows(names, rows=[("a", 1.0), ("b", None)]),
    )
    for rows in (from_table, from_rows):
        assert len(rows) == 2 and rows.rows == [("a", 1.0), ("b", None)]
        assert rows.columns == {"id": ["a", "b"], "x": [1.0, None]}
        assert rows.arrow_column("x").to_pylist() == [1.0, None]
        assert rows.frame()["id"].tolist() == ["a", "b"]
    assert isinstance(from_table.arrow_column("x"), pa.Array)  # one array, not the table's chunks
