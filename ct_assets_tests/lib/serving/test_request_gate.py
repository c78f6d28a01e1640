"""The request gate in front of a real ASGI app: unknown query parameters and pipelines are 400s,
unsupported media types and encodings 415s, gzip bodies reach the app decoded and a gzip bomb is
a 413 once its decoded size passes the limit; every answer carries a request id, and every error
answer, the gate's or the app's inside it, is one object of one readable line and that id; only the
slot's own instance id marks a request as a rollout's compatibility check."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import httpx
import orjson

from ct_assets.lib.serving.body_limit import BodyLimit
from ct_assets.lib.serving.request_gate import (
    INSTANCE_VARIABLE,
    ROLLOUT_CHECK,
    ROLLOUT_CHECK_HEADER,
    RequestGate,
    quote,
)


async def _echo(scope, receive, send) -> None:
    """Answers with the body it read."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _post(
    path: str, content: bytes, headers: dict[str, str], limit: int = 1000, inner=_echo
) -> httpx.Response:
    async def go() -> httpx.Response:
        app = RequestGate(inner, pipeline=lambda: "flights", max_bytes=limit)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=content, headers=headers)

    return asyncio.run(go())


JSON = {"content-type": "application/json"}


def test_query_parameters_media_types_and_encodings() -> None:
    assert _post("/predict?pipeline=flights", b"{}", JSON).status_code == 200
    assert _post("/predict", b"{}", {}).status_code == 200  # no content type: read as JSON
    other = _post("/predict?pipeline=other", b"{}", JSON)
    assert other.status_code == 400 and "unknown pipeline 'other'" in other.json()["error"]
    assert _post("/predict_columns?x=1", b"{}", JSON).status_code == 400
    for media_type in ("multipart/form-data; boundary=", "text/plain", "application/x-www-form-urlencoded"):
        assert _post("/predict", b"{}", {"content-type": media_type}).status_code == 415
    assert _post("/predict_arrow", b"x", JSON).status_code == 415
    assert _post("/predict_arrow", b"x", {}).status_code == 415
    assert _post("/predict", b"{}", {**JSON, "content-encoding": "br"}).status_code == 415
    assert _post("/healthz?anything=1", b"x", {"content-type": "text/plain"}).status_code == 200  # not gated


def test_gzip_bodies_are_decoded_within_the_limit() -> None:
    zipped = _post("/predict", gzip.compress(b'{"rows": []}'), {**JSON, "content-encoding": "gzip"})
    assert (zipped.status_code, zipped.content) == (200, b'{"rows": []}')
    assert (
        _post("/predict", gzip.compress(b"x" * 1000), {**JSON, "content-encoding": "gzip"}).status_code == 200
    )
    bomb = _post("/predict", gzip.compress(b"x" * 1001), {**JSON, "content-encoding": "gzip"})
    assert bomb.status_code == 413 and "decompresses to over 1,000 bytes" in bomb.json()["error"]
    assert _post("/predict", b"plain", {**JSON, "content-encoding": "gzip"}).status_code == 400
    cut = gzip.compress(b"x" * 500)[:-10]
    assert _post("/predict", cut, {**JSON, "content-encoding": "gzip"}).status_code == 400
    trailing = gzip.compress(b"{}") + b"more"
    assert _post("/predict", trailing, {**JSON, "content-encoding": "gzip"}).status_code == 400
    deflate = zlib.compress(b"{}")
    assert _post("/predict", deflate, {**JSON, "content-encoding": "gzip"}).status_code == 400


def test_every_answer_carries_a_request_id_and_quotes_input_short() -> None:
    given = _post("/predict", b"{}", {**JSON, "x-request-id": "abc-1"})
    assert given.headers["x-request-id"] == "abc-1"
    made = _post("/predict?" + "q" * 5000 + "=1", b"{}", JSON)
    assert len(made.headers["x-request-id"]) == 32 and len(made.text) < 300
    assert quote("7" * 4200) == "'" + "7" * 39 + "…"


def test_only_the_slot_s_own_instance_id_marks_a_rollout_check(monkeypatch) -> None:
    seen: list[bool] = []

    async def app(scope, receive, send) -> None:
        seen.append(ROLLOUT_CHECK.get())
        await _echo(scope, receive, send)

    async def post(headers: dict[str, str]) -> None:
        gate = RequestGate(app, pipeline=lambda: "flights", max_bytes=1000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://t") as client:
            await client.post("/predict", content=b"{}", headers={**JSON, **headers})

    monkeypatch.setenv(INSTANCE_VARIABLE, "a1b2c3")
    for marker in ({ROLLOUT_CHECK_HEADER: "a1b2c3"}, {ROLLOUT_CHECK_HEADER: "a1b2c4"}, {}):
        asyncio.run(post(marker))
    monkeypatch.delenv(INSTANCE_VARIABLE)
    asyncio.run(post({ROLLOUT_CHECK_HEADER: ""}))
    assert seen == [True, False, False, False]


def _refusing(status: int, body: bytes, pieces: int = 1):
    """An app that reads the request and answers `status` with `body` (in `pieces` messages)."""

    async def app(scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            more = start + size < len(body)
            await send({"type": "http.response.body", "body": body[start : start + size], "more_body": more})

    return app


def test_every_error_answer_is_one_object_with_the_request_id() -> None:
    headers = {**JSON, "x-request-id": "shape-1"}
    own = _post("/predict?x=1", b"{}", headers)
    assert own.status_code == 400 and set(own.json()) == {"error", "request_id"}
    assert own.json()["request_id"] == "shape-1"
    listed = orjson.dumps([{"error": "row 0: missing fields ['license_number']"}])
    inner = _post("/predict", b"{}", headers, inner=_refusing(400, listed, pieces=3))
    assert inner.status_code == 400 and inner.headers["content-type"] == "application/json"
    assert inner.json() == {"error": "row 0: missing fields ['license_number']", "request_id": "shape-1"}
    assert int(inner.headers["content-length"]) == len(inner.content)
    pydantic_body = orjson.dumps(
        {
            "error": "1 validation error for Input",
            "detail": [{"type": "missing", "loc": ["rows"], "msg": "x"}],
        }
    )
    empty = _post("/predict", b"", headers, inner=_refusing(400, pydantic_body))
    assert empty.json()["error"] == 'the body is empty: the body must be a JSON object {"rows": [...]}'
    columns = _post(
        "/predict_columns", b"{}", headers, inner=_refusing(400, pydantic_body.replace(b"rows", b"columns"))
    )
    assert (
        columns.json()["error"]
        == 'the body must be a JSON object {"columns": {...}}: it has no "columns" field'
    )
    limited = _post("/predict", b"x" * 2000, headers, inner=BodyLimit(_echo, max_bytes=1000))
    assert limited.status_code == 413 and limited.json()["request_id"] == "shape-1"
    assert "larger than the limit of 1,000 bytes" in limited.json()["error"]
    answered = _post("/predict", b"{}", headers)
    assert answered.status_code == 200 and answered.content == b"{}"  # answers pass through untouched


def test_the_app_s_404_and_405_leave_in_the_one_shape_and_health_checks_untouched() -> None:
    """A Starlette app (BentoML's service is one) answers an unknown route and a wrong method in
    plain text; through the gate both are the error object with a request id."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def ready(request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/predict", ready, methods=["POST"]), Route("/readyz", ready)])

    async def go() -> list[httpx.Response]:
        app = RequestGate(inner, pipeline=lambda: "flights", max_bytes=1000)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/predict", headers={"x-request-id": "caller-1"}),
                await client.get("/nosuch" + "x" * 100),
                await client.get("/readyz"),
            ]

    wrong_method, unknown, health = asyncio.run(go())
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json() == {
        "error": "GET is not allowed on '/predict': send POST",
        "request_id": "caller-1",
    }
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    body = unknown.json()
    assert (
        body["error"].startswith("no route '/nosuch")
        and "POST to /predict, /predict_columns" in body["error"]
    )
    assert body["request_id"] == unknown.headers["x-request-id"] and "x" * 60 not in body["error"]
    assert health.status_code == 200 and health.text == "ok" and "x-request-id" not in health.headers
