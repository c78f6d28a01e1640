"""The body limit in front of a real ASGI app: bodies over the limit get a 413 before the app sees
them, declared or chunked; bodies under it reach the app whole."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ct_assets.lib.serving.body_limit import DEFAULT_MAX_BYTES, BodyLimit, max_body_bytes


async def _echo(scope, receive, send) -> None:
    """Answers with the length of the body it read."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _post(content, limit: int = 100) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=BodyLimit(_echo, limit))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/predict", content=content)

    return asyncio.run(go())


def _chunks(*parts: bytes):
    async def generate():
        for part in parts:
            yield part

    return generate()


def test_a_body_under_the_limit_reaches_the_app() -> None:
    reply = _post(b"x" * 100)
    assert (reply.status_code, reply.text) == (200, "100")


def test_a_declared_length_over_the_limit_is_refused_at_once() -> None:
    reply = _post(b"x" * 101)
    assert reply.status_code == 413
    assert json.loads(reply.text)["error"] == (
        "request body of 101 bytes is larger than the limit of 100 bytes (CT_MAX_BODY_BYTES); "
        "send large batches as several requests"
    )


def test_a_chunked_body_is_counted_as_it_arrives() -> None:
    small = _post(_chunks(b"a" * 40, b"b" * 40))
    assert (small.status_code, small.text) == (200, "80")  # read here, replayed to the app whole
    large = _post(_chunks(b"a" * 60, b"b" * 60, b"c" * 60))
    assert large.status_code == 413
    assert "request body of over 120 bytes" in large.json()["error"]


def test_the_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CT_MAX_BODY_BYTES", raising=False)
    assert max_body_bytes() == DEFAULT_MAX_BYTES == 64 * 2**20
    monkeypatch.setenv("CT_MAX_BODY_BYTES", "1234")
    assert max_body_bytes() == 1234
