"""Serving logic: request validation with readable errors, and features identical to the
warehouse's for the same rows (one implementation, no training/serving skew)."""

from __future__ import annotations

import pandas as pd
import pytest

from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.feature_engine import FeatureEngine, FeatureRows, compute_features
from ct_assets.lib.serving.request_parsing import rows_from_columns, validate_request
from ct_assets.lib.serving.request_rules import RequestError

DAY = "2013-01-02"


@pytest.fixture
def featurized(warehouse, flights_spec, flights_landing, tmp_path) -> tuple:
    for table in flights_spec.context_tables:
        data_steps.load_context(
            warehouse, flights_spec, table, context_file(flights_landing, flights_spec.name, table)
        )
    data_steps.ingest_raw(
        warehouse, flights_spec, DAY, partition_files(flights_landing, flights_spec.name, DAY)
    )
    data_steps.validate_partition(warehouse, flights_spec, DAY)
    for group in groups(flights_spec):
        data_steps.materialize_group(warehouse, flights_spec, group, DAY)
    data_steps.build_features(warehouse, flights_spec, DAY)
    snapshot = tmp_path / "online"
    online_snapshot.publish(warehouse, flights_spec, DAY, snapshot, history_hours=48)
    return warehouse, snapshot


def request_rows(con, spec, day: str, limit: int) -> list[dict]:
    """What a caller sends: the day's validated rows without post-event columns, as JSON."""
    return deploy_steps.request_payload(con, spec, [day], limit)


def test_service_features_equal_the_feature_table(featurized, flights_spec) -> None:
    con, snapshot = featurized
    rows = request_rows(con, flights_spec, DAY, 300)
    served = compute_features(validate_request(rows, flights_spec), flights_spec, snapshot)
    stored = con.execute(partition_view_sql(flights_spec.name, "features", [DAY])).df()
    columns = [flights_spec.entity_id, *flights_spec.feature_columns]
    expected = stored.set_index(flights_spec.entity_id).loc[served[flights_spec.entity_id]].reset_index()
    pd.testing.assert_frame_equal(
        served[columns].reset_index(drop=True), expected[columns], check_dtype=False
    )
    # One row at a time takes the prepared-statement path: the same features.
    engine = FeatureEngine(flights_spec, snapshot)
    one_by_one = [engine.features(validate_request([row], flights_spec)) for row in rows[:40]]
    single = FeatureRows(one_by_one[0].names, [f.rows[0] for f in one_by_one]).frame()
    pd.testing.assert_frame_equal(
        single[columns].reset_index(drop=True), expected[columns].head(40), check_dtype=False
    )
    manifest = online_snapshot.manifest(snapshot)
    assert manifest["as_of_partition"] == DAY and manifest["rows"]["planes"] == 3322
    assert 0 < manifest["rows"]["weather"] <= 3 * 48


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("carrier"), "row 0: missing fields ['carrier']"),
        (lambda r: r.update(distance="far"), "row 0: field 'distance' must be integer, got 'far'"),
        (lambda r: r.update(gate="B2"), "row 0: unknown fields ['gate']"),
        (lambda r: r.update(origin=None), "row 0: field 'origin' is required"),
        (lambda r: r.update(carrier="ZZ"), "row 0: carrier 'ZZ' is not an allowed value"),
        (lambda r: r.update(distance=99999), "row 0: distance 99999 is above the maximum 6000"),
        (lambda r: r.update(sched_dep_at="yesterday"), "row 0: field 'sched_dep_at' must be timestamp"),
    ],
)
def test_malformed_rows_get_readable_errors(featurized, flights_spec, mutate, message) -> None:
    con, _ = featurized
    rows = request_rows(con, flights_spec, DAY, 1)
    mutate(rows[0])
    with pytest.raises(RequestError) as error:
        validate_request(rows, flights_spec)
    assert message in str(error.value)


def test_batch_shape_errors(flights_spec) -> None:
    with pytest.raises(RequestError, match="non-empty list"):
        validate_request([], flights_spec)
    with pytest.raises(RequestError, match="row 0: must be an object, got int"):
        validate_request([3], flights_spec)
    with pytest.raises(RequestError, match="larger than the limit of 2"):
        validate_request([{}, {}, {}], flights_spec, max_rows=2)
    with pytest.raises(RequestError, match="same length"):
        rows_from_columns({"a": [1, 2], "b": [1]})
    assert rows_from_columns({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_duplicate_ids_in_a_batch_are_refused(featurized, flights_spec) -> None:
    con, _ = featurized
    rows = request_rows(con, flights_spec, DAY, 2)
    rows[1]["flight_id"] = rows[0]["flight_id"]
    with pytest.raises(RequestError, match="appears more than once"):
        validate_request(rows, flights_spec)
