"""An ASGI middleware that checks what a prediction request says about its body before the body is
parsed, and answers what does not fit with a 4xx and a short message (never a 5xx from BentoML's
own parsing):

- query parameters: a route accepts only the ones it knows (`pipeline`, whose value must name the
  served pipeline); anything else is a 400;
- media type: each route takes its own (`application/json` for the JSON routes, a body without a
  Content-Type being read as JSON; the Arrow stream type for /predict_arrow); anything else,
  `multipart/form-data` included, is a 415;
- content encoding: `identity` or `gzip`; a gzip body is decompressed here, a piece at a time, and
  refused with a 413 as soon as its decompressed size passes the body limit (a gzip bomb never
  takes more than the limit); a body that is not valid gzip is a 400; any other encoding is a 415.

Each request on a route it knows gets a request id (`quiet_log.REQUEST_ID`: the caller's
`X-Request-ID`, or a new one), returned as the `x-request-id` response header; a refusal is logged
as one INFO line with it (`quiet_log.log_refused`). Every error answer on such a route, whoever
wrote it (this gate, the body limit inside it, the service's checks, BentoML's parsing of the JSON
body), leaves in one shape: `{"error": "<one readable line>", "request_id": "<id>"}`
(`error_body`). Other requests (health checks, metrics, the operator's routes) pass through
untouched, but for the app's 404 (no such route) and 405 (a prediction route called without POST),
which leave in the same shape, with a request id and a line that says what the service answers.

A rollout's compatibility check (the holdout rows sent to a new slot before it takes traffic) marks
its request with the slot's own instance id (`X-CT-Rollout-Check`, the `CT_SLOT_INSTANCE` the slot
was started with, known only to the deployment): `ROLLOUT_CHECK` is then true, and the service
answers without writing the prediction log, so checks never count as served traffic.
"""

from __future__ import annotations

import hmac
import os
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ct_assets.lib.serving.error_body import error_json, reshaped
from ct_assets.lib.serving.quiet_log import REQUEST_ID, log_refused, new_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
# Longest piece of a caller's input quoted back in an error message.
QUOTE_CHARS = 40
# A slot's processes carry its instance id in this variable (`slots`: also how its processes are
# found); the rollout's compatibility check sends the same id in this header.
INSTANCE_VARIABLE = "CT_SLOT_INSTANCE"
ROLLOUT_CHECK_HEADER = "x-ct-rollout-check"
# True while a request is a rollout's compatibility check (see the module doc).
ROLLOUT_CHECK: ContextVar[bool] = ContextVar("ct_rollout_check", default=False)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters (with an ellipsis) so that an error message never
    echoes a large input whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


@dataclass(frozen=True)
class RouteRule:
    """What one route accepts: its media types, whether a body without a Content-Type is read as
    the first of them, its query parameters, and the field its JSON body holds (`envelope`)."""

    media_types: tuple[str, ...]
    untyped_ok: bool = False
    params: frozenset[str] = frozenset({"pipeline"})
    envelope: str | None = None


DEFAULT_ROUTES: dict[str, RouteRule] = {
    "/predict": RouteRule((JSON,), untyped_ok=True, envelope="rows"),
    "/predict_columns": RouteRule((JSON,), untyped_ok=True, envelope="columns"),
    "/predict_arrow": RouteRule((ARROW,)),
}


class Refused(Exception):
    """A request answered here with `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestGate:
    """The middleware (see module). `pipeline` is the served pipeline's name (a `pipeline` query
    parameter naming another is refused); `max_bytes` bounds a decompressed body."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        pipeline: Callable[[], str],
        max_bytes: int,
        routes: dict[str, RouteRule] | None = None,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.max_bytes = max_bytes
        self.routes = DEFAULT_ROUTES if routes is None else routes
        self.instance = os.environ.get(INSTANCE_VARIABLE)  # this slot's; fixed for its life

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rule = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if rule is None or scope.get("method") != "POST":
            if scope["type"] == "http":
                send = _routing_errors(send, scope, list(self.routes))
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        request_id = new_request_id(headers.get("x-request-id"))
        REQUEST_ID.set(request_id)
        ROLLOUT_CHECK.set(is_rollout_check(headers.get(ROLLOUT_CHECK_HEADER), self.instance))
        send = _answering(send, request_id, rule.envelope, _bodiless(headers))
        try:
            self._check_query(rule, scope.get("query_string", b""))
            _check_media_type(rule, headers.get("content-type"))
            encoding = headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", "", "gzip", "x-gzip"):
                raise Refused(415, f"content encoding {quote(encoding)} is not supported: send gzip or none")
            if encoding in ("gzip", "x-gzip"):
                body = await self._gunzip(receive)
                scope = _decoded_scope(scope, len(body))
                receive = _replay(body, receive)
        except Refused as refused:
            log_refused("POST", scope.get("path", ""), refused.status, str(refused))
            await _answer(send, refused.status, str(refused))
            return
        await self.app(scope, receive, send)

    def _check_query(self, rule: RouteRule, query: bytes) -> None:
        try:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
        except ValueError:
            raise Refused(400, "the query string cannot be read") from None
        unknown = sorted({name for name, _ in pairs if name not in rule.params})
        if unknown:
            known = ", ".join(sorted(rule.params)) or "none"
            shown = ", ".join(quote(name) for name in unknown[:5])
            raise Refused(400, f"unknown query parameters {shown}: this route takes {known}")
        for name, value in pairs:
            if name == "pipeline" and value != self.pipeline():
                raise Refused(
                    400, f"unknown pipeline {quote(value)}: this service serves {self.pipeline()!r}"
                )

    async def _gunzip(self, receive: Receive) -> bytes:
        """The request body, gzip-decoded, at most `max_bytes` of it (413 past that)."""
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        parts: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                raise Refused(400, "the client went away before sending the whole body")
            more = bool(message.get("more_body", False))
            data = message.get("body", b"")
            try:
                while data:
                    piece = inflater.decompress(data, self.max_bytes - size + 1)
                    size += len(piece)
                    if size > self.max_bytes:
                        raise Refused(
                            413,
                            f"the gzip body decompresses to over {self.max_bytes:,} bytes, larger than "
                            "the limit (CT_MAX_BODY_BYTES); send large batches as several requests",
                        )
                    parts.append(piece)
                    data = inflater.unconsumed_tail
                if inflater.unused_data or (inflater.eof and more and data):
                    raise Refused(400, "the body goes on after its gzip stream ends")
            except zlib.error as err:
                raise Refused(400, f"the body is not valid gzip: {err}") from None
        if not inflater.eof:
            raise Refused(400, "the body is not valid gzip: it ends before the gzip stream does")
        return b"".join(parts)


def is_rollout_check(marker: str | None, instance: str | None) -> bool:
    """Does `marker` (the request's rollout-check header) name this slot's `instance`?"""
    return bool(marker and instance) and hmac.compare_digest(marker.encode(), instance.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _check_media_type(rule: RouteRule, content_type: str | None) -> None:
    if content_type is None or not content_type.strip():
        if rule.untyped_ok:
            return
        raise Refused(415, f"send the body with content-type {rule.media_types[0]}")
    media_type = content_type.split(";")[0].strip().lower()
    if media_type not in rule.media_types:
        raise Refused(415, f"send the body with content-type {rule.media_types[0]}, got {quote(media_type)}")


def _decoded_scope(scope: Scope, length: int) -> Scope:
    """The scope of a decoded body: no Content-Encoding, its Content-Length the decoded size."""
    dropped = (b"content-encoding", b"content-length")
    headers = [(k, v) for k, v in scope.get("headers") or [] if k not in dropped]
    headers.append((b"content-length", str(length).encode()))
    return {**scope, "headers": headers}


def _bodiless(headers: dict[str, str]) -> bool:
    """Does the request come without a body (a zero Content-Length, or neither it nor chunks)?"""
    length = headers.get("content-length")
    if length is None:
        return "transfer-encoding" not in headers
    return length.strip() == "0"


def _answering(send: Send, request_id: str, envelope: str | None, bodiless: bool) -> Send:
    """`send` with the request id in the headers and every error answer's body in the one shape
    (`error_body.reshaped`; an error body is held until it is complete, then rewritten)."""
    held: Message | None = None
    parts: list[bytes] = []

    async def sending(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            message = {**message, "headers": headers}
            if message["status"] >= 400:
                held = message
                return
        elif held is not None and message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = reshaped(b"".join(parts), held["status"], envelope, bodiless, request_id)
            await send({**held, "headers": _json_headers(held["headers"], len(body))})
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return sending


def _routing_errors(send: Send, scope: Scope, routes: list[str]) -> Send:
    """`send` with the app's 404 and 405 answers replaced by a line in the one error shape, with a
    request id (logged as a refusal); every other answer as the app sent it."""
    method, path = scope.get("method", ""), scope.get("path", "")
    refused: Message | None = None

    async def sending(message: Message) -> None:
        nonlocal refused
        if message["type"] == "http.response.start" and message["status"] in (404, 405):
            refused = message
            return
        if refused is None:
            await send(message)
            return
        if message.get("more_body", False):
            return
        status = refused["status"]
        named = ", ".join(routes)
        line = (
            f"{method} is not allowed on {quote(path)}: send POST"
            if status == 405
            else f"no route {quote(path)}: predictions are POST to {named}"
        )
        request_id = new_request_id(_headers(scope).get("x-request-id"))
        log_refused(method, path, status, line)
        body = error_json(line, request_id)
        headers = [(b"x-request-id", request_id.encode())]
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({**refused, "headers": _json_headers(headers, len(body))})
        await send({"type": "http.response.body", "body": body})

    return sending


def _json_headers(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    dropped = (b"content-type", b"content-length")
    kept = [(k, v) for k, v in headers if k.lower() not in dropped]
    return [*kept, (b"content-type", b"application/json"), (b"content-length", str(length).encode())]


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, message: str) -> None:
    body = error_json(message, None)  # `_answering` adds the request id
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
