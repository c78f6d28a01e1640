"""The operator API over real HTTP on loopback: refuses without the token (RFC 6750's Bearer
scheme), writes nothing for a refused request, caps bodies, refuses (and audits) a body that is not
a JSON object, checks the token before saying a path does not exist, rate-limits failed authentications,
refuses a rollout of a bento not in the store before anything starts, answers /status at once while
a rollout runs, and keeps its audit log private (0600)."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from ct_assets.lib.serving import proxy_supervisor
from ct_assets.lib.serving.operator_api import create_app
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment, HealthPolicy, RolloutResult


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


def _audit_entries(deployment: Deployment) -> list[dict]:
    path = deployment.record.audit_trail().path
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_rollout_of_a_bento_not_in_the_store_is_refused_before_anything_starts(
    deployment: Deployment,
) -> None:
    """The deployment's own rollout: nothing is started (no proxy, no slot, no state) and the audit
    log holds the operator's request only, no rollout_started or rollback."""

    def rollout(bento: str, who: str) -> RolloutResult:
        return deployment.rollout(bento, ([], []), [], HealthPolicy(), who)

    url, server = _serve(create_app(deployment, rollout=rollout, token="s3cret-token"))
    try:
        answer = httpx.post(
            f"{url}/rollout", headers={"Authorization": "Bearer s3cret-token"}, json={"bento": "nosuch:tag"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json() == {"error": "no bento 'nosuch:tag' in the bento store"}
        assert [(e["action"], e["details"]["answer"]) for e in _audit_entries(deployment)] == [
            ("operator_request", 422)
        ]
        assert not deployment.state_path.exists()
        assert proxy_supervisor.supervisor_pid(deployment.layout) is None
    finally:
        server.should_exit = True


def test_authorization_is_parsed_as_rfc_6750_says(deployment: Deployment) -> None:
    url, server = _serve(create_app(deployment, token="s3cret-token"))
    try:
        for header in ("Bearer s3cret-token", "bearer s3cret-token", "BEARER  s3cret-token"):
            assert httpx.get(f"{url}/status", headers={"Authorization": header}).status_code == 200, header
        for header in ("s3cret-token", "Basic s3cret-token", "Bearers3cret-token", "Bearer s3cret-token x"):
            refused = httpx.get(f"{url}/status", headers={"Authorization": header})
            assert refused.status_code == 401, header
            assert refused.headers["www-authenticate"].startswith("Bearer")
    finally:
        server.should_exit = True


def test_unauthenticated_requests_leave_nothing_behind_and_bodies_are_capped(deployment: Deployment) -> None:
    url, server = _serve(create_app(deployment, token="s3cret-token"))
    good = {"Authorization": "Bearer s3cret-token"}
    try:
        huge = json.dumps({"why": "x" * 5_000_000}).encode()
        for path in ("/rollback", "/approve", "/rollout"):
            assert httpx.post(f"{url}{path}", content=huge, timeout=30).status_code == 401
        assert _audit_entries(deployment) == []
        too_big = httpx.post(f"{url}/rollback", headers=good, content=huge, timeout=30)
        assert too_big.status_code == 413
        assert httpx.post(f"{url}/rollback", headers=good, json={"why": "w" * 70_000}).status_code == 413
        entries = _audit_entries(deployment)
        assert [e["details"]["answer"] for e in entries] == [413, 413]
        assert "x" * 100 not in json.dumps(entries)
        assert stat.S_IMODE(deployment.record.audit_trail().path.stat().st_mode) == 0o600
    finally:
        server.should_exit = True


def test_a_body_that_is_not_a_json_object_is_a_400_that_says_so_and_is_audited(
    deployment: Deployment,
) -> None:
    url, server = _serve(create_app(deployment, token="s3cret-token"))
    good = {"Authorization": "Bearer s3cret-token"}
    bodies = {
        b"why=bad scores": "the body is not valid JSON (Expecting value: line 1 column 1 (char 0))",
        '{"why": "café"}'.encode("latin-1"): "the body is not valid UTF-8 (byte 0xe9 at position 12)",
        b'["bad scores"]': 'the body must be a JSON object, such as {"why": "..."}, not a list',
        b'"bad scores"': 'the body must be a JSON object, such as {"why": "..."}, not a string',
    }
    try:
        for body, said in bodies.items():
            answer = httpx.post(f"{url}/rollback", headers=good, content=body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"].startswith(said), answer.json()
        assert httpx.post(f"{url}/approve", headers=good, content=b"").status_code == 409  # empty: {}
        entries = _audit_entries(deployment)
        assert [(e["details"]["endpoint"], e["details"]["answer"]) for e in entries] == [
            *[("rollback", 400)] * 4,
            ("approve", 409),
        ]
        assert httpx.post(f"{url}/rollback", content=b"[1]").status_code == 401
        assert len(_audit_entries(deployment)) == 5
    finally:
        server.should_exit = True


def test_an_unknown_path_needs_the_token_before_its_json_404(deployment: Deployment) -> None:
    url, server = _serve(create_app(deployment, token="s3cret-token"))
    good = {"Authorization": "Bearer s3cret-token"}
    try:
        for method, path in (("GET", "/nosuch"), ("POST", "/rollbacks"), ("GET", "/rollback")):
            refused = httpx.request(method, f"{url}{path}")
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert "operator token" in refused.json()["error"]
        missing = httpx.get(f"{url}/nosuch", headers=good)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert missing.json() == {
            "error": "no such endpoint: /nosuch (there are /status, /rollout, /approve, /rollback)"
        }
        wrong_method = httpx.get(f"{url}/rollback", headers=good)
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert wrong_method.json() == {"error": "GET is not allowed on /rollback"}
        assert _audit_entries(deployment) == []
    finally:
        server.should_exit = True


def test_failed_authentications_are_rate_limited(deployment: Deployment) -> None:
    url, server = _serve(create_app(deployment, token="s3cret-token"))
    try:
        statuses = [
            httpx.get(f"{url}/status", headers={"Authorization": f"Bearer guess{i}"}).status_code
            for i in range(12)
        ]
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
        blocked = httpx.get(f"{url}/status", headers={"Authorization": "Bearer s3cret-token"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    finally:
        server.should_exit = True


def test_status_answers_at_once_while_a_rollout_runs(deployment: Deployment) -> None:
    started = threading.Event()

    def slow_rollout(bento: str, who: str) -> RolloutResult:
        started.set()
        time.sleep(3)
        return RolloutResult("switched", "blue", bento)

    url, server = _serve(create_app(deployment, rollout=slow_rollout, token="s3cret-token"))
    good = {"Authorization": "Bearer s3cret-token"}
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post, f"{url}/rollout", headers=good, json={"bento": "b:v2"}, timeout=30
            )
            assert started.wait(10)
            times = []
            with httpx.Client(headers=good) as client:
                for _ in range(5):
                    begun = time.perf_counter()
                    assert client.get(f"{url}/status").status_code == 200
                    times.append(time.perf_counter() - begun)
            second = httpx.post(f"{url}/rollout", headers=good, json={"bento": "b:v3"})
            assert second.status_code == 409 and "another rollout" in second.json()["error"]
            assert pending.result().json()["status"] == "switched"
        assert max(times) < 0.1, times
    finally:
        server.should_exit = True
