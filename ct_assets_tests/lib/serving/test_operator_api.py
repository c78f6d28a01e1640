"""The operator API over real HTTP on loopback: refuses without the token, works with it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from ct_assets.lib.serving.operator_api import create_app
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment, RolloutResult


def _serve(app: Starlette) -> tuple[str, uvicorn.Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    layout = ProxyLayout(tmp_path / "proxy", 1, {"blue": 2, "green": 3})
    return Deployment(tmp_path / "deploy", layout, {}, "bentoml")


def test_without_a_configured_token_every_endpoint_refuses(deployment: Deployment) -> None:
    url, server = _serve(create_app(deployment, token=""))
    try:
        response = httpx.get(f"{url}/status", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 503 and "CT_OPERATOR_TOKEN is not set" in response.text
    finally:
        server.should_exit = True


def test_token_is_required_and_checked(deployment: Deployment) -> None:
    calls: list[tuple[str, str]] = []

    def rollout(bento: str, who: str) -> RolloutResult:
        calls.append((bento, who))
        return RolloutResult("switched", "blue", bento)

    url, server = _serve(create_app(deployment, rollout=rollout, token="s3cret-token"))
    good = {"Authorization": "Bearer s3cret-token"}
    try:
        assert httpx.get(f"{url}/status").status_code == 401
        assert httpx.get(f"{url}/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(f"{url}/rollback", json={"why": "x"}).status_code == 401
        status = httpx.get(f"{url}/status", headers=good)
        assert status.status_code == 200 and status.json()["state"]["active"] is None
        assert httpx.post(f"{url}/rollback", headers=good, json={}).status_code == 422
        refused = httpx.post(f"{url}/rollback", headers=good, json={"why": "bad scores"})
        assert refused.status_code == 409 and "no previous deployment" in refused.text
        assert httpx.post(f"{url}/approve", headers=good, json={}).status_code == 409
        started = httpx.post(
            f"{url}/rollout", headers=good, json={"bento": "flights_delay_service:v0002", "who": "ann"}
        )
        assert started.json()["status"] == "switched" and calls == [("flights_delay_service:v0002", "ann")]
    finally:
        server.should_exit = True
