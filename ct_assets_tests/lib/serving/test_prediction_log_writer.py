"""The background writer: every submitted request reaches the log, gathered into record batches
within its interval; a request the open stream cannot hold, or a failed write, starts a new segment
rather than being dropped; a torn last batch costs only itself."""

from __future__ import annotations

import time
from pathlib import Path

from ct_assets.lib.serving import prediction_log
from ct_assets.lib.serving.prediction_log_partition import read_partition
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets_tests.lib.serving.conftest import logged_batch

DAY = "2013-01-02"  # the day of `logged_batch`'s event times


def test_background_writer_logs_every_prediction_and_drains_on_close(tmp_path: Path, flights_spec) -> None:
    # batches end at flush() only: the torn-tail check below knows where the last one begins
    writer = PredictionLogWriter(tmp_path, flights_spec, "green", max_pending=4, flush_seconds=3600)
    odd = 'b, "q" %s \u00e9'  # separators, quotes, a % and non-ASCII must survive
    for request in range(50):  # more than the queue holds: submit waits, nothing is dropped
        writer.submit(logged_batch(f"r{request}", 1.0, odd))
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
        writer.submit(logged_batch(f"r{number}", distance))
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
        writer.submit(logged_batch(f"r{number}", 1.0))
    writer.flush()
    (path,) = prediction_log.log_files(tmp_path)
    batches = list(pa.ipc.open_stream(path.read_bytes()))  # the stream is still open: no end marker
    assert sum(b.num_rows for b in batches) == 60 and len(batches) < 30
    writer.submit(logged_batch("late", 2.0))
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
    wider = {**logged_batch("r2", 1.0), "feature_names": ["flight_id", "distance", "gate"]}
    wider["feature_rows"] = [("a", 1.0, 7), ("b", None, 8)]
    texts = {**wider, "request_id": "r3", "feature_rows": [("a", 1.0, "007"), ("b", None, None)]}
    for batch in (logged_batch("r1", 1.0), wider, texts, {**texts, "time": "2013-01-02T10:00:01+00:00"}):
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
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets.lib.core.spec import load_spec
from ct_assets_tests.conftest import FLIGHTS_SPEC
from ct_assets_tests.lib.serving.conftest import logged_batch

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
writer = PredictionLogWriter(Path({str(tmp_path)!r}), load_spec(FLIGHTS_SPEC), "blue")
writer.submit(logged_batch("small", 1.0))
writer.flush()
big = logged_batch("big", 1.0)
noise = "".join(random.Random(1).choices(string.ascii_letters, k=120_000))  # LZ4 cannot shrink it enough
big["entity_ids"] = [noise + "0", noise + "1"]
writer.submit(big)
writer.flush()
writer.submit(logged_batch("after", 2.0))
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
