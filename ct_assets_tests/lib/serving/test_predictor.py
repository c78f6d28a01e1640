"""Serving logic: request validation with readable errors, and features identical to the
warehouse's for the same rows (one implementation, no training/serving skew)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.serving import prediction_log
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.feature_engine import FeatureEngine, FeatureRows, compute_features
from ct_assets.lib.serving.prediction_log import PredictionLogWriter, read_partition
from ct_assets.lib.serving.request_parsing import rows_from_columns, validate_request
from ct_assets.lib.serving.request_rules import RequestError
from ct_assets.lib.serving.scoring import Prediction, log_predictions

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


def _request(request_id: str, distance: float | None, odd: str = "b") -> dict:
    return {
        "request_id": request_id,
        "time": "2013-01-02T10:00:00+00:00",
        "model_version": "v0001",
        "entity_ids": ["a", odd],
        "scores": [0.25, 0.75],
        "decisions": [False, True],
        "latency_ms": 1.5,
        "event_times": ["2013-01-02 10:00:00+00:00", None],
        "segments": {"origin": ["EWR", "JFK"]},
        "feature_names": ["flight_id", "distance"],
        "feature_rows": [("a", distance), (odd, None)],
    }


def test_background_writer_logs_every_prediction_and_drains_on_close(tmp_path: Path, flights_spec) -> None:
    # batches end at flush() only: the torn-tail check below knows where the last one begins
    writer = PredictionLogWriter(tmp_path, flights_spec, "green", max_pending=4, flush_seconds=3600)
    odd = 'b, "q" %s \u00e9'  # separators, quotes, a % and non-ASCII must survive
    for request in range(50):  # more than the queue holds: submit waits, nothing is dropped
        writer.submit(_request(f"r{request}", 1.0, odd))
        if request % 10 == 9:
            writer.flush()  # five record batches of ten requests
    writer.close()
    (path,) = prediction_log.log_files(tmp_path)
    assert path.suffix == ".arrows" and writer.errors == 0
    requests = prediction_log.read_requests(path)
    assert [r["request_id"] for r in requests] == [f"r{i}" for i in range(50)]
    lines = [p for r in requests for p in prediction_log.predictions(r)]
    assert len(lines) == 100
    assert lines[1] == {
        "request_id": "r0",
        "time": "2013-01-02T10:00:00+00:00",
        "pipeline": flights_spec.name,
        "model_version": "v0001",
        "slot": "green",
        "entity_id": odd,
        "score": 0.75,
        "decision": True,
        "latency_ms": 1.5,
        "event_time": None,
        "segments": {"origin": "JFK"},
        "features": {"flight_id": odd, "distance": None},
    }
    assert lines[0]["event_time"] == "2013-01-02 10:00:00+00:00" and lines[0]["features"]["distance"] == 1.0
    # A writer killed mid-write leaves a torn last batch: the reader keeps every batch before it.
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 8 - 40])  # the end-of-stream marker and part of a batch
    kept = [r["request_id"] for r in prediction_log.read_requests(path)]
    assert kept == [f"r{i}" for i in range(40)]
    assert len(read_partition(tmp_path, flights_spec, DAY)) == len(kept)


def test_a_column_that_begins_all_null_does_not_split_the_log_per_request(
    tmp_path: Path, flights_spec
) -> None:
    """A one-row JSON request whose feature is null gives that column no type; the writer casts
    later nulls to the stream's type, and once a value arrives it starts one more file with the
    types of both, so that types cannot flip back and forth."""
    writer = PredictionLogWriter(tmp_path, flights_spec, "blue")
    for number, distance in enumerate([None, 2.0, None, 3.0, None]):
        writer.submit(_request(f"r{number}", distance))
        writer.flush()
    writer.close()
    paths = prediction_log.log_files(tmp_path)
    assert len(paths) == 2 and writer.errors == 0
    requests = [r for path in paths for r in prediction_log.read_requests(path)]
    assert [r["features"]["distance"][0] for r in requests] == [None, 2.0, None, 3.0, None]
    assert len(read_partition(tmp_path, flights_spec, DAY)) == 5


def test_writer_gathers_requests_into_record_batches_and_writes_them_within_its_interval(
    tmp_path: Path, flights_spec
) -> None:
    """Requests that arrive together share a record batch (a batch has a fixed cost per column),
    and a lone request reaches the file after at most `flush_seconds`, without a flush or close."""
    import pyarrow as pa

    writer = PredictionLogWriter(tmp_path, flights_spec, "blue", flush_seconds=0.5)
    for number in range(30):
        writer.submit(_request(f"r{number}", 1.0))
    writer.flush()
    (path,) = prediction_log.log_files(tmp_path)
    batches = list(pa.ipc.open_stream(path.read_bytes()))  # the stream is still open: no end marker
    assert sum(b.num_rows for b in batches) == 60 and len(batches) < 30
    writer.submit(_request("late", 2.0))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "late" not in {
        r["request_id"] for r in prediction_log.read_requests(path)
    }:
        time.sleep(0.05)
    assert prediction_log.read_requests(path, "late")[0]["features"]["distance"] == [2.0, None]
    writer.close()
    assert writer.errors == 0 and len(prediction_log.read_requests(path)) == 31


def test_a_request_the_stream_cannot_hold_starts_a_segment_instead_of_being_dropped(
    tmp_path: Path, flights_spec
) -> None:
    """Other columns, or a type that would need a value-changing cast ('007' into an integer
    column), start the next segment; nothing is dropped or altered, and a reused request id still
    reads back as two requests."""
    writer = PredictionLogWriter(tmp_path, flights_spec, "blue")
    wider = {**_request("r2", 1.0), "feature_names": ["flight_id", "distance", "gate"]}
    wider["feature_rows"] = [("a", 1.0, 7), ("b", None, 8)]
    texts = {**wider, "request_id": "r3", "feature_rows": [("a", 1.0, "007"), ("b", None, None)]}
    for batch in (_request("r1", 1.0), wider, texts, {**texts, "time": "2013-01-02T10:00:01+00:00"}):
        writer.submit(batch)
        writer.flush()
    writer.close()
    assert writer.errors == 0 and len(writer.paths) == 3
    requests = [r for path in prediction_log.log_files(tmp_path) for r in prediction_log.read_requests(path)]
    assert [r["request_id"] for r in requests] == ["r1", "r2", "r3", "r3"]
    assert requests[1]["features"]["gate"] == [7, 8] and requests[2]["features"]["gate"] == ["007", None]


def test_after_a_failed_write_the_log_goes_on_in_a_new_file(tmp_path: Path) -> None:
    """A write that fails part way (here the file size limit, as a full disk would) may leave a
    partial batch at the end of the file; later requests must not follow it there, where readers
    would never reach them."""
    script = f"""
import random, resource, signal, string, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parents[2])!r})
from ct_assets.lib.serving.prediction_log import PredictionLogWriter
from ct_assets.lib.core.spec import load_spec
from ct_assets_tests.conftest import FLIGHTS_SPEC
from ct_assets_tests.lib.serving.test_predictor import _request

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
writer = PredictionLogWriter(Path({str(tmp_path)!r}), load_spec(FLIGHTS_SPEC), "blue")
writer.submit(_request("small", 1.0))
writer.flush()
big = _request("big", 1.0)
noise = "".join(random.Random(1).choices(string.ascii_letters, k=120_000))  # LZ4 cannot shrink it enough
big["entity_ids"] = [noise + "0", noise + "1"]
writer.submit(big)
writer.flush()
writer.submit(_request("after", 2.0))
writer.close()
print(writer.errors, len(writer.paths))
"""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "2"]
    requests = [r for path in prediction_log.log_files(tmp_path) for r in prediction_log.read_requests(path)]
    assert [r["request_id"] for r in requests] == ["small", "after"]
