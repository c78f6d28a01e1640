"""Alerts: one JSON line per alert in the sink, read back whole; the webhook posts the same fields."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from ct_assets.lib.core.alerts import Alert, post_webhook, read_jsonl, write_jsonl


def _alert(tier: str = "warning", partition: str | None = "2013-01-05") -> Alert:
    return Alert(
        tier=tier,  # type: ignore[arg-type]
        pipeline="loans",
        partition=partition,
        cause="drift in 3 of 10 features",
        action="look at the drift report",
        owner="ml-team",
    )


def test_alerts_round_trip_through_the_jsonl_sink(tmp_path: Path) -> None:
    sink = tmp_path / "deep" / "alerts.jsonl"
    first, second = _alert(), _alert("critical", None)
    write_jsonl(sink, first)
    write_jsonl(sink, second)
    assert read_jsonl(sink) == [first, second]
    assert all(json.loads(line)["pipeline"] == "loans" for line in sink.read_text().splitlines())
    assert sink.stat().st_mode & 0o777 == 0o600


def test_a_missing_sink_holds_no_alerts(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "none.jsonl") == []


def test_an_alert_reads_as_one_line_naming_tier_pipeline_partition_and_owner() -> None:
    text = str(_alert())
    assert text.startswith("[WARNING] loans 2013-01-05: drift in 3 of 10 features.")
    assert "(owner ml-team)" in text
    assert "None" not in str(_alert(partition=None))


def test_the_webhook_receives_the_alert_as_json() -> None:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        status = post_webhook(f"http://127.0.0.1:{server.server_port}/hook", _alert())
    finally:
        thread.join(5)
        server.server_close()
    assert status == 204
    assert received == [_alert().as_dict() | {"at": received[0]["at"]}]
