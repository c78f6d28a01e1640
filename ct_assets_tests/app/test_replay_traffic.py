"""The live demo's traffic against a real HTTP endpoint: history lands at once without requests, a
replayed day does not end (land) before the loop has finished the day before it, and after the last
day its requests repeat while the loop is busy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ct_assets.app.replay_traffic import ReplayDriver
from ct_assets.lib.core.spec import PipelineSpec


class _Answer(BaseHTTPRequestHandler):
    rows = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).rows += len(body["rows"])
        payload = json.dumps({"model_version": "v0001", "predictions": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[str]:
    """The URL of a real HTTP server that answers every request as model v0001."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def _driver(url: str, tmp_path: Path, spec: PipelineSpec, **options: object) -> ReplayDriver:
    return ReplayDriver(
        spec,
        url,
        tmp_path / "landing",
        tmp_path / "replay.json",
        seconds_per_day=0.2,
        batch_rows=200,
        **options,
    )


def test_history_lands_first_and_a_day_waits_for_the_loop(
    answering: str, tmp_path: Path, flights_spec: PipelineSpec
) -> None:
    done: set[str] = set()
    landing = tmp_path / "landing"
    driver = _driver(answering, tmp_path, flights_spec, ready=lambda day: day in done)
    try:
        assert driver.land_history(["2013-01-01", "2013-01-02"]) == ["2013-01-01", "2013-01-02"]
        assert driver.progress.next_day == "2013-01-03" and _Answer.rows == 0, "history sends no request"
        assert driver.land_history(["2013-01-01", "2013-01-02"]) == [], "history lands once"
        player = threading.Thread(target=driver.play, args=("2013-01-04",), daemon=True)
        player.start()
        time.sleep(3)
        # 01-02 is not ingested yet: 01-03's requests went out, but the day has not ended
        assert driver.progress.days_landed == ["2013-01-01", "2013-01-02"]
        assert driver.progress.served > 0 and driver.progress.next_day == "2013-01-03"
        done.add("2013-01-02")
        time.sleep(3)
        assert driver.progress.days_landed[-1] == "2013-01-03", "the loop caught up: the day lands"
        assert driver.progress.next_day == "2013-01-04"
        done.add("2013-01-03")
        player.join(timeout=20)
        assert not player.is_alive()
        assert driver.progress.days_landed[-1] == "2013-01-04"
        assert sorted(p.name for p in (landing / flights_spec.name).glob("2013-01-0*")) == [
            f"2013-01-0{d}.csv" for d in range(1, 5)
        ]
        assert driver.progress.model_versions == {"v0001": driver.progress.served}
    finally:
        driver.stop()


def test_after_the_last_day_its_requests_repeat_while_the_loop_is_busy(
    answering: str, tmp_path: Path, flights_spec: PipelineSpec
) -> None:
    landing = tmp_path / "landing"
    driver = _driver(answering, tmp_path, flights_spec)
    checks: list[float] = []

    def busy() -> bool:
        checks.append(time.monotonic())
        return len(checks) <= 3  # busy for three looks, then quiet

    try:
        driver.play("2013-01-01")
        one_day = driver.progress.served
        assert one_day > 0 and driver.progress.days_landed == ["2013-01-01"]
        driver.keep_serving("2013-01-01", busy)
        assert len(checks) == 4, "it looks again after each pass over the day"
        assert driver.progress.served == 4 * one_day, "the day was sent again three times"
        assert driver.progress.days_landed == ["2013-01-01"] and driver.progress.next_day == "2013-01-02"
        assert sorted(p.name for p in (landing / flights_spec.name).glob("2013-*")) == ["2013-01-01.csv"]
        saved = json.loads((tmp_path / "replay.json").read_text())
        assert saved["served"] == driver.progress.served, "the progress file counts the repeats"
        driver.stop()
        driver.keep_serving("2013-01-01", lambda: True)  # stopped: nothing more is sent
        assert driver.progress.served == 4 * one_day
    finally:
        driver.stop()
