"""Traffic between the slots: shares become HAProxy weights, a canary and a switch send the
right runtime-API commands and are written where a restarted proxy reads them, a slot becomes a
standby only by serving, and draining waits for requests in flight (against a stand-in admin
socket; one slow test drains a real HAProxy with a request in flight)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout, Routing
from ct_assets.lib.serving.slots import terminate_group
from ct_assets.lib.serving.traffic import WEIGHT_SCALE, Traffic, weights
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.admin_socket import AdminSocket


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminSocket]:
    stand_in = AdminSocket(ProxyLayout(tmp_path / "proxy", 8000, {"blue": 8001, "green": 8002}))
    try:
        yield stand_in
    finally:
        stand_in.close()


@pytest.mark.parametrize(
    ("shares", "expected"),
    [
        ({}, {"blue": 0, "green": 0}),
        ({"blue": 1.0}, {"blue": 256, "green": 0}),
        ({"blue": 0.5, "green": 0.5}, {"blue": 128, "green": 128}),
        ({"blue": 0.95, "green": 0.05}, {"blue": 243, "green": 13}),
        ({"blue": 0.999, "green": 0.001}, {"blue": 256, "green": 0}),  # below half a step: no traffic
        ({"green": 0.003}, {"blue": 0, "green": 1}),
        ({"purple": 1.0}, {"blue": 0, "green": 0}),  # only the deployment's slots get weights
    ],
    ids=repr,
)
def test_shares_become_weights_of_both_slots(shares: dict, expected: dict) -> None:
    assert weights(shares) == expected
    assert all(0 <= w <= WEIGHT_SCALE for w in weights(shares).values())


def test_a_canary_splits_weights_and_records_them_for_a_restart(admin: AdminSocket) -> None:
    Traffic(admin.layout).canary("blue", "green", 0.1)
    assert admin.sent() == ["set server serving/blue weight 230", "set server serving/green weight 26"]
    assert proxy.server_stats(admin.layout)["green"]["weight"] == "26"
    assert proxy.saved_routing(admin.layout) == Routing({"blue": 230, "green": 26}, set())
    assert "server green 127.0.0.1:8002 weight 26" in admin.layout.config.read_text()


@pytest.mark.parametrize(("share", "active", "candidate"), [(0.0, 256, 0), (1.0, 0, 256), (0.25, 192, 64)])
def test_the_canary_share_goes_to_the_candidate(admin, share: float, active: int, candidate: int) -> None:
    Traffic(admin.layout).canary("green", "blue", share)
    stats = proxy.server_stats(admin.layout)
    assert (int(stats["green"]["weight"]), int(stats["blue"]["weight"])) == (active, candidate)


def test_all_traffic_to_a_slot_makes_it_a_standby_and_keeps_the_old_one(admin: AdminSocket) -> None:
    traffic = Traffic(admin.layout)
    traffic.all_to("blue")
    assert admin.sent() == [
        "set server serving/blue weight 256",
        "set server serving/green weight 0",
        "set server serving/blue_standby state ready",
    ]
    traffic.all_to("green")
    # blue served before: its backup entry stays, so it answers if green dies
    assert proxy.saved_routing(admin.layout) == Routing({"blue": 0, "green": 256}, {"blue", "green"})
    assert admin.rows["blue_standby"]["status"] == "UP" and admin.rows["green_standby"]["status"] == "UP"


def test_a_new_bento_is_no_standby_until_it_serves(admin: AdminSocket) -> None:
    traffic = Traffic(admin.layout)
    traffic.all_to("blue")
    traffic.all_to("green")
    traffic.no_standby("blue")  # a new bento is starting in blue
    assert admin.sent()[-1] == "set server serving/blue_standby state maint"
    assert proxy.saved_routing(admin.layout).standby == {"green"}
    assert "server blue_standby 127.0.0.1:8001 backup track serving/blue disabled" in (
        admin.layout.config.read_text()
    )


def test_no_standby_without_a_proxy_is_nothing_to_do(tmp_path: Path) -> None:
    layout = ProxyLayout(tmp_path / "proxy", 8000, {"blue": 8001, "green": 8002})
    Traffic(layout).no_standby("blue")  # the first slot starts before its proxy
    assert not layout.folder.exists()


def test_draining_an_idle_slot_returns_at_once(admin: AdminSocket) -> None:
    started = time.monotonic()
    assert Traffic(admin.layout).drain("green", timeout=5) == 0
    assert time.monotonic() - started < 1
    admin.rows.pop("green")  # a slot the proxy does not list has nothing in flight either
    started = time.monotonic()
    assert Traffic(admin.layout).drain("green", timeout=5) == 0
    assert time.monotonic() - started < 1


def test_draining_waits_until_the_last_request_is_answered(admin: AdminSocket) -> None:
    admin.set("blue", scur="3")
    threading.Timer(0.6, lambda: admin.set("blue", scur="0")).start()
    started = time.monotonic()
    assert Traffic(admin.layout).drain("blue", timeout=10) == 0
    waited = time.monotonic() - started
    assert 0.5 < waited < 5, waited
    assert len(admin.sent("show stat")) >= 3  # it looked again until the count dropped


def test_draining_gives_up_after_its_timeout_and_says_how_many_are_left(admin: AdminSocket) -> None:
    admin.set("blue", scur="2")
    started = time.monotonic()
    assert Traffic(admin.layout).drain("blue", timeout=0.5) == 2
    assert 0.5 <= time.monotonic() - started < 3


def _slow_slot(port: int, seconds: float) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != "/alive":
                time.sleep(seconds)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.slow
@requires_haproxy
def test_a_real_proxy_is_drained_of_a_request_in_flight(tmp_path: Path) -> None:
    port, blue, green = free_ports(3)
    servers = [_slow_slot(blue, 2.0), _slow_slot(green, 0.0)]
    ports = {"blue": blue, "green": green}
    layout = ProxyLayout(tmp_path / "proxy", port, ports, ports)
    process = proxy.start(layout, {"blue": WEIGHT_SCALE, "green": 0})
    try:
        deadline = time.monotonic() + 10
        while not all(r["status"].startswith("UP") for r in proxy.server_stats(layout).values()):
            assert time.monotonic() < deadline, proxy.server_stats(layout)
            time.sleep(0.1)
        answers: list[str] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/predict", timeout=10).text)
        )
        sent_at = time.monotonic()
        request.start()
        while proxy.server_stats(layout)["blue"]["scur"] == "0":
            time.sleep(0.02)
        traffic = Traffic(layout)
        traffic.all_to("green")
        assert httpx.get(f"http://127.0.0.1:{port}/fast", timeout=5).elapsed.total_seconds() < 1  # green
        traffic.drain("blue", timeout=10)
        drained_at = time.monotonic()
        # blue's slow request (2 s) was still in flight after the switch: drain waited for it
        assert 1.8 < drained_at - sent_at < 5, drained_at - sent_at
        assert proxy.server_stats(layout)["blue"]["scur"] == "0"
        request.join(timeout=10)
        assert answers == ["ok"]
    finally:
        terminate_group(process.pid, timeout=10)  # SIGTERM, then SIGKILL if HAProxy is still there
        process.wait(timeout=10)
        for server in servers:
            server.shutdown()
