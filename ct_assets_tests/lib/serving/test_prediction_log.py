"""Reading the prediction log back: files in writing order, requests filtered by id and time,
flat predictions, and times as the text the JSON log held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from ct_assets.lib.serving import prediction_log
from ct_assets.lib.serving.scoring import Prediction, log_predictions


def test_prediction_log_reads_back_what_was_logged(tmp_path: Path, flights_spec) -> None:
    features = pd.DataFrame({"flight_id": ["a", "b"], "distance": [1.0, 2.0]})
    predictions = [
        Prediction("r1", "a", 0.2, False, "v0001"),
        Prediction("r1", "b", 0.9, True, "v0001"),
    ]
    paths = [
        log_predictions(tmp_path, flights_spec, predictions, features, {"origin": ["EWR", "JFK"]}, "blue")
        for _ in range(2)
    ]
    assert paths[0] != paths[1] and paths[1].name.endswith(".1.arrows")  # a file is never reopened
    assert prediction_log.log_files(tmp_path) == paths  # in writing order
    (request,) = prediction_log.read_requests(paths[0])
    assert request["entity_id"] == ["a", "b"] and request["segments"] == {"origin": ["EWR", "JFK"]}
    logged = [
        p for path in paths for r in prediction_log.read_requests(path) for p in prediction_log.predictions(r)
    ]
    assert len(logged) == 4
    assert logged[1]["segments"] == {"origin": "JFK"} and logged[1]["features"]["distance"] == 2.0
    assert {p["request_id"] for p in logged} == {"r1"} and logged[0]["slot"] == "blue"
    assert prediction_log.read_requests(paths[0], "r2") == []
    logged_at = datetime.fromisoformat(request["time"])
    assert len(prediction_log.read_requests(paths[0], since=logged_at.isoformat())) == 1
    assert (
        prediction_log.read_requests(paths[0], since=(logged_at + timedelta(microseconds=1)).isoformat())
        == []
    )


def test_times_read_back_as_the_json_log_wrote_them() -> None:
    """The Arrow log stores timestamps; readers get the text the JSON log held (`str(datetime)`
    for event times, `isoformat()` for request times): nulls stay null, fractions stay."""
    import pyarrow as pa

    from ct_assets.lib.serving.prediction_log import time_texts

    times = [
        datetime(2013, 1, 9, 4, 59, tzinfo=UTC),
        None,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2013, 1, 9, 4, 59, 0, 250_000, tzinfo=UTC),
        datetime(2013, 1, 9, 4, 59, tzinfo=UTC),
    ]
    stored = pa.array(times, type=pa.timestamp("us", tz="UTC"))
    assert time_texts(stored, iso=False) == [None if t is None else str(t) for t in times]
    assert time_texts(stored, iso=True) == [None if t is None else t.isoformat() for t in times]
