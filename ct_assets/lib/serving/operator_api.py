"""The operator API: status, rollout, approve and rollback over HTTP, behind a bearer token.

The token is read from the environment (`CT_OPERATOR_TOKEN`) and never logged; without it every
operator endpoint refuses. The prediction API stays open on loopback; only these endpoints need it.

A request is checked in this order, and nothing of a refused one is read further or written:
1. failed authentications: a client with `MAX_FAILURES` of them in the last `FAILURE_WINDOW`
   seconds gets a 429 (with Retry-After) until the oldest ages out;
2. the token, from `Authorization: Bearer <token>` as RFC 6750 puts it (the scheme is required
   and case-insensitive; the token is compared in constant time): a 401 otherwise, with
   `WWW-Authenticate: Bearer`; the request body is never read;
3. the body, read up to `MAX_BODY_BYTES` (a 413 past it) and parsed as a JSON object: a body that
   is not UTF-8, not JSON, or JSON but not an object gets a 400 that says which (an empty body is
   an empty object).

A path or method the API does not have gets the same token check first, then a 404 (or 405). Every
error is JSON, `{"error": "<one line>"}`.

Every authenticated POST to an endpoint is an `operator_request` entry in the audit log: the
endpoint, the answer, who (the body's `who`, else the token holder's name from `CT_OPERATOR_NAME`)
and why. Rollouts, approvals and rollbacks run in a worker thread, one at a time (a second gets a
409), so that `/status` answers at once while one runs.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ct_assets.lib.serving.bento_build import UnknownBento
from ct_assets.lib.serving.rollout import Deployment

TOKEN_VARIABLE = "CT_OPERATOR_TOKEN"
NAME_VARIABLE = "CT_OPERATOR_NAME"  # who holds the token, for the audit log (default "operator api")
MAX_BODY_BYTES = 64 * 1024
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
# RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token (the scheme case-insensitive).
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")


class _TooLarge(Exception):
    """A request body over MAX_BODY_BYTES."""


class _NotAnObject(Exception):
    """A request body that is not a JSON object in UTF-8 (the message says what it is)."""


class FailureLimit:
    """Failed authentications per client: `blocked_for` says how long a client must wait."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit, self.window = limit, window
        self.failures: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.setdefault(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked_for(self, client: str) -> float:
        """Seconds until `client` may try again (0: it may)."""
        now = time.monotonic()
        with self.lock:
            times = self._recent(client, now)
            if not times:
                self.failures.pop(client, None)
            return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def failed(self, client: str) -> None:
        with self.lock:
            self._recent(client, time.monotonic()).append(time.monotonic())
            while len(self.failures) > 10_000:  # bounded memory: forget the longest-known clients
                self.failures.pop(next(iter(self.failures)))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization` header in RFC 6750's form, or None."""
    if header is None:
        return None
    match = _BEARER.fullmatch(header.strip())
    return match.group(1) if match else None


def create_app(
    deployment: Deployment, rollout: Callable[[str, str], Any] | None = None, token: str | None = None
) -> Any:
    """A Starlette app over one pipeline's deployment. `rollout(bento, who)` runs a rollout."""
    expected = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
    api = _OperatorApi(deployment, rollout, expected)
    return Starlette(
        routes=[
            Route("/status", api.status, methods=["GET"]),
            Route("/rollback", api.audited("rollback", api.rollback), methods=["POST"]),
            Route("/approve", api.audited("approve", api.approve), methods=["POST"]),
            Route("/rollout", api.audited("rollout", api.start_rollout), methods=["POST"]),
        ],
        exception_handlers={404: api.no_such_route, 405: api.no_such_route},
    )


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body), read up to MAX_BODY_BYTES (_TooLarge past
    it; _NotAnObject for a body that is not a JSON object in UTF-8)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    wanted = 'the body must be a JSON object, such as {"why": "..."}'
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as err:
        raise _NotAnObject(
            f"the body is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at position {err.start}): "
            f"{wanted}, encoded as UTF-8"
        ) from err
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as err:
        raise _NotAnObject(f"the body is not valid JSON ({err}): {wanted}") from err
    if not isinstance(data, dict):
        raise _NotAnObject(f"{wanted}, not {_json_kind(data)}")
    return data


def _json_kind(value: Any) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _answer(result: Any) -> JSONResponse:
    return JSONResponse({"status": result.status, "slot": result.slot, "bento": result.bento})


def _error(message: str, status_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


class _OperatorApi:
    """The endpoints' handlers over one deployment, each behind the token check."""

    def __init__(
        self, deployment: Deployment, rollout: Callable[[str, str], Any] | None, expected: str
    ) -> None:
        self.deployment = deployment
        self.rollout = rollout
        self.expected = expected
        self.holder = os.environ.get(NAME_VARIABLE) or "operator api"
        self.failures = FailureLimit()
        self.busy = threading.Lock()  # one rollout, approval or rollback at a time

    def refused(self, request: Request) -> JSONResponse | None:
        """The refusal for a request without the right token (None: it may pass)."""
        if not self.expected:
            return _error(f"operator API disabled: {TOKEN_VARIABLE} is not set", 503)
        client = request.client.host if request.client else "unknown"
        wait = self.failures.blocked_for(client)
        if wait > 0:
            return _error(
                "too many failed authentications; try again later", 429, {"Retry-After": str(int(wait) + 1)}
            )
        given = bearer_token(request.headers.get("authorization"))
        if given is None or not hmac.compare_digest(given.encode(), self.expected.encode()):
            self.failures.failed(client)
            return _error(
                "missing or wrong operator token (send 'Authorization: Bearer <token>')",
                401,
                {"WWW-Authenticate": 'Bearer realm="ct operator"'},
            )
        return None

    async def no_such_route(self, request: Request, exc: Exception) -> JSONResponse:
        """A path (404) or method (405) the API does not have, answered only past the token check."""
        if refused := self.refused(request):
            return refused
        if getattr(exc, "status_code", 404) == 405:
            return _error(
                f"{request.method} is not allowed on {request.url.path}", 405, getattr(exc, "headers", None)
            )
        return _error(
            f"no such endpoint: {request.url.path} (there are /status, /rollout, /approve, /rollback)", 404
        )

    async def status(self, request: Request) -> JSONResponse:
        if refused := self.refused(request):
            return refused
        state, audit = self.deployment.state().model_dump(), self.deployment.audit_log()[-20:]
        return JSONResponse({"state": state, "audit": audit})

    async def _exclusive(self, work: Callable[[], Any]) -> Any:
        """Run `work` in a worker thread unless another operation runs (RuntimeError then)."""
        if not self.busy.acquire(blocking=False):
            raise RuntimeError("another rollout, approval or rollback is running; try again when it ends")
        try:
            return await run_in_threadpool(work)
        finally:
            self.busy.release()

    async def rollback(self, request: Request, data: dict[str, Any]) -> JSONResponse:
        why, who = str(data.get("why") or ""), str(data.get("who") or self.holder)
        if not why:
            return _error("a rollback needs 'why'", 422)
        try:
            return _answer(
                await self._exclusive(lambda: self.deployment.rollback_to_previous(who=who, why=why))
            )
        except RuntimeError as err:
            return _error(str(err), 409)

    async def approve(self, request: Request, data: dict[str, Any]) -> JSONResponse:
        who, why = str(data.get("who") or self.holder), str(data.get("why") or "approved")
        try:
            return _answer(await self._exclusive(lambda: self.deployment.approve(who=who, why=why)))
        except RuntimeError as err:
            return _error(str(err), 409)

    async def start_rollout(self, request: Request, data: dict[str, Any]) -> JSONResponse:
        bento = str(data.get("bento") or "")
        rollout = self.rollout
        if not bento or rollout is None:
            return _error("a rollout needs 'bento'", 422)
        who = str(data.get("who") or self.holder)
        try:
            result = await self._exclusive(lambda: rollout(bento, who))
        except UnknownBento as err:  # refused before anything started
            return _error(str(err), 422)
        except RuntimeError as err:
            return _error(str(err), 409)
        return JSONResponse({"status": result.status, "slot": result.slot, "reasons": result.reasons})

    def audited(
        self, endpoint: str, handler: Callable[[Request, dict[str, Any]], Any]
    ) -> Callable[[Request], Any]:
        """`handler` behind the token check and the body limit, given the body's JSON object; an
        `operator_request` audit entry for every authenticated call (nothing for a refused one)."""

        async def run(request: Request) -> JSONResponse:
            if refused := self.refused(request):
                return refused
            try:
                data = await _body(request)
            except _TooLarge:
                response = _error(f"request body larger than {MAX_BODY_BYTES:,} bytes", 413)
                self.record(endpoint, request, response.status_code, {})
                return response
            except _NotAnObject as err:
                response = _error(str(err), 400)
                self.record(endpoint, request, response.status_code, {})
                return response
            response = await handler(request, data)
            self.record(endpoint, request, response.status_code, data)
            return response

        return run

    def record(self, endpoint: str, request: Request, status_code: int, data: dict[str, Any]) -> None:
        folder = self.deployment.folder
        client = request.client.host if request.client else "unknown"
        self.deployment.record.audit_trail().append(
            "operator_request",
            str(data.get("who") or self.holder),
            str(data.get("why") or "none given"),
            pipeline=folder.name,
            subject=f"{folder.name}/deployment",
            component="operator_api",
            details={
                "endpoint": endpoint,
                "answer": status_code,
                "authenticated_as": self.holder,
                "bento": data.get("bento"),
                "client": client,
            },
        )
