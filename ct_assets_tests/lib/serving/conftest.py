"""Fixtures of the serving tests: a real HAProxy in front of two real HTTP servers standing in for
the blue and green slots (each answers its own name)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.request_rules import RequestRules
from ct_assets.lib.serving.slots import terminate_group
from ct_assets_tests.conftest import free_ports


def stand_in_slot(name: str, port: int) -> http.server.ThreadingHTTPServer:
    """A real HTTP server on `port` answering every GET with `name`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # HAProxy's health checks may hang up before the answer is written

    server = Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ProxyLayout]:
    port, blue, green = free_ports(3)
    slots = [stand_in_slot("blue", blue), stand_in_slot("green", green)]
    slot_ports = {"blue": blue, "green": green}  # the stand-in slots answer the health check too
    layout = ProxyLayout(tmp_path / "proxy", port, slot_ports, slot_ports)
    process = proxy.start(layout, {"blue": 100, "green": 0})
    try:
        yield layout
    finally:
        terminate_group(process.pid, timeout=10)  # SIGTERM, then SIGKILL if HAProxy is still there
        process.wait(timeout=10)
        for server in slots:
            server.shutdown()


def wait_all_up(layout: ProxyLayout) -> None:
    """Wait until the proxy sees every slot UP."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = proxy.server_stats(layout)
        if all(row["status"].startswith("UP") for row in stats.values()):
            return
        time.sleep(0.1)
    raise AssertionError(f"slots not UP: {proxy.server_stats(layout)}")


def logged_batch(request_id: str, distance: float | None, odd: str = "b") -> dict:
    """One scored request of two rows as serving hands it to the prediction log's writer."""
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


@pytest.fixture(scope="module")
def rules(flights_spec: PipelineSpec) -> RequestRules:
    """The request rules of the flights spec."""
    return RequestRules(flights_spec)
