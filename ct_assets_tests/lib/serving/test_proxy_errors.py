"""HAProxy's own answers, from a real HAProxy: a 503 with no slot up and a 502 from a slot that answers
junk are JSON `{"error", "request_id"}` with the id in `x-request-id`, the caller's when it is plain,
and a slot that answers sees the same id."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.slots import terminate_group
from ct_assets_tests.conftest import free_ports, requires_haproxy

pytestmark = [requires_haproxy]


def echo_slot(port: int, junk: bool = False) -> http.server.ThreadingHTTPServer:
    """A real HTTP server answering each GET with the `X-Request-ID` it received (or, with `junk`,
    with bytes that are not HTTP)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if junk and self.path != "/alive":
                self.wfile.write(b"not http at all\r\n\r\n")
                self.close_connection = True
                return
            body = (self.headers.get("x-request-id") or "").encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxy_with(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ProxyLayout, list]]:
    """A real HAProxy whose blue slot is `request.param`: None (nothing listens), "echo" or "junk"."""
    port, blue, green = free_ports(3)
    servers = [] if request.param is None else [echo_slot(blue, junk=request.param == "junk")]
    ports = {"blue": blue, "green": green}
    layout = ProxyLayout(tmp_path / "proxy", port, ports, ports)
    process = proxy.start(layout, {"blue": 256, "green": 0})
    try:
        yield layout, servers
    finally:
        terminate_group(process.pid, timeout=10)
        process.wait(timeout=10)
        for server in servers:
            server.shutdown()


def _refusal(answer: httpx.Response) -> str:
    """The request id of an answer in the one shape of a refusal."""
    assert answer.headers["content-type"] == "application/json", answer.text
    body = json.loads(answer.text)
    assert set(body) == {"error", "request_id"} and "\n" not in body["error"], body
    assert answer.headers["x-request-id"] == body["request_id"]
    return body["request_id"]


@pytest.mark.parametrize("proxy_with", [None], indirect=True)
def test_no_slot_up_is_a_json_503_with_the_request_id(proxy_with) -> None:
    layout, _ = proxy_with
    url = f"http://127.0.0.1:{layout.port}/predict"
    answer = httpx.get(url, timeout=20)
    assert answer.status_code == 503
    assert json.loads(answer.text)["error"] == (
        "no serving slot could take the request: none is up, or all stayed busy for 10 s"
    )
    generated = _refusal(answer)
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert _refusal(httpx.get(url, timeout=20)) != generated
    assert _refusal(httpx.get(url, headers={"x-request-id": "caller-7"}, timeout=20)) == "caller-7"
    odd = 'a"b\\c'
    assert _refusal(httpx.get(url, headers={"x-request-id": odd}, timeout=20)) == odd
    too_long = "x" * 65
    assert len(_refusal(httpx.get(url, headers={"x-request-id": too_long}, timeout=20))) == 32


@pytest.mark.parametrize("proxy_with", ["junk"], indirect=True)
def test_a_slot_answering_junk_is_a_json_502_with_the_callers_id(proxy_with) -> None:
    layout, _ = proxy_with
    answer = httpx.get(
        f"http://127.0.0.1:{layout.port}/predict", headers={"x-request-id": "caller-8"}, timeout=20
    )
    assert answer.status_code == 502
    assert _refusal(answer) == "caller-8"


@pytest.mark.parametrize("proxy_with", ["echo"], indirect=True)
def test_the_slot_sees_the_id_the_proxy_would_answer_with(proxy_with) -> None:
    layout, _ = proxy_with
    url = f"http://127.0.0.1:{layout.port}/predict"
    assert httpx.get(url, headers={"x-request-id": "caller-9"}, timeout=20).text == "caller-9"
    generated = httpx.get(url, headers={"x-request-id": "has space"}, timeout=20).text
    assert len(generated) == 32 and int(generated, 16) >= 0
