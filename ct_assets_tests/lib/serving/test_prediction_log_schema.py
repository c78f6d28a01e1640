"""Scored requests as log rows: one row per prediction, in request order, each request's own fields
repeated on its rows, segments and features under their prefixes; requests that cannot share a
table are refused."""

from __future__ import annotations

import pytest

from ct_assets.lib.serving.prediction_log_schema import COLUMNS, requests_table
from ct_assets_tests.lib.serving.conftest import logged_batch


def test_one_row_per_prediction_with_the_request_fields_repeated() -> None:
    table = requests_table([logged_batch("r1", 1.0), logged_batch("r2", None)], "flights", "blue")
    assert set(COLUMNS) <= set(table.column_names)
    assert table.num_rows == 4
    assert table.column("request_id").to_pylist() == ["r1", "r1", "r2", "r2"]
    assert table.column("slot").to_pylist() == ["blue"] * 4
    assert table.column("pipeline").to_pylist() == ["flights"] * 4
    assert table.column("segment.origin").to_pylist() == ["EWR", "JFK"] * 2
    assert table.column("feature.distance").to_pylist() == [1.0, None, None, None]
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"


def test_requests_that_cannot_share_a_table_are_refused() -> None:
    wider = {**logged_batch("r2", 1.0), "feature_names": ["flight_id", "distance", "gate"]}
    with pytest.raises(ValueError, match="same features and segments"):
        requests_table([logged_batch("r1", 1.0), wider], "flights", "blue")
    short = {**logged_batch("r1", 1.0), "decisions": [True]}
    with pytest.raises(ValueError, match="different lengths"):
        requests_table([short], "flights", "blue")
