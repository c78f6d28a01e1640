"""The operator API: status, rollout, approve and rollback over HTTP, behind a bearer token.

The token is read from the environment (`CT_OPERATOR_TOKEN`) and never logged; without it every
operator endpoint refuses. The prediction API stays open on loopback; only these endpoints need it.
Every POST (accepted or refused) is an `operator_request` entry in the audit log: the endpoint, the
answer, who (the body's `who`, else the token holder's name from `CT_OPERATOR_NAME`) and why; the
token itself is never written anywhere.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ct_assets.lib.serving.rollout import Deployment

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

TOKEN_VARIABLE = "CT_OPERATOR_TOKEN"
NAME_VARIABLE = "CT_OPERATOR_NAME"  # who holds the token, for the audit log (default "operator api")


def create_app(
    deployment: Deployment, rollout: Callable[[str, str], Any] | None = None, token: str | None = None
) -> Any:
    """A Starlette app over one pipeline's deployment. `rollout(bento, who)` runs a rollout."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    expected = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
    api = _OperatorApi(deployment, rollout, expected)
    return Starlette(
        routes=[
            Route("/status", api.status, methods=["GET"]),
            Route("/rollback", api.audited("rollback", api.rollback), methods=["POST"]),
            Route("/approve", api.audited("approve", api.approve), methods=["POST"]),
            Route("/rollout", api.audited("rollout", api.start_rollout), methods=["POST"]),
        ]
    )


async def _body(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for anything else)."""
    try:
        data = await request.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _answer(result: Any) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"status": result.status, "slot": result.slot, "bento": result.bento})


def _error(message: str, status_code: int) -> JSONResponse:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status_code)


class _OperatorApi:
    """The endpoints' handlers over one deployment, each behind the token check."""

    def __init__(
        self, deployment: Deployment, rollout: Callable[[str, str], Any] | None, expected: str
    ) -> None:
        self.deployment = deployment
        self.rollout = rollout
        self.expected = expected
        self.holder = os.environ.get(NAME_VARIABLE) or "operator api"

    def refused(self, request: Request) -> JSONResponse | None:
        """The refusal for a request without the right token (None: it may pass)."""
        if not self.expected:
            return _error(f"operator API disabled: {TOKEN_VARIABLE} is not set", 503)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.expected.encode()):
            return _error("missing or wrong operator token", 401)
        return None

    async def status(self, request: Request) -> JSONResponse:
        from starlette.responses import JSONResponse

        if refused := self.refused(request):
            return refused
        return JSONResponse({"state": self.deployment.state(), "audit": self.deployment.audit_log()[-20:]})

    async def rollback(self, request: Request) -> JSONResponse:
        if refused := self.refused(request):
            return refused
        data = await _body(request)
        why, who = str(data.get("why") or ""), str(data.get("who") or self.holder)
        if not why:
            return _error("a rollback needs 'why'", 422)
        try:
            return _answer(self.deployment.rollback_to_previous(who=who, why=why))
        except RuntimeError as err:
            return _error(str(err), 409)

    async def approve(self, request: Request) -> JSONResponse:
        if refused := self.refused(request):
            return refused
        data = await _body(request)
        who, why = str(data.get("who") or self.holder), str(data.get("why") or "approved")
        try:
            return _answer(self.deployment.approve(who=who, why=why))
        except RuntimeError as err:
            return _error(str(err), 409)

    async def start_rollout(self, request: Request) -> JSONResponse:
        from starlette.responses import JSONResponse

        if refused := self.refused(request):
            return refused
        data = await _body(request)
        bento = str(data.get("bento") or "")
        if not bento or self.rollout is None:
            return _error("a rollout needs 'bento'", 422)
        result = self.rollout(bento, str(data.get("who") or self.holder))
        return JSONResponse({"status": result.status, "slot": result.slot, "reasons": result.reasons})

    def audited(self, endpoint: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """`handler`, with an `operator_request` audit entry for every call, accepted or refused."""

        async def run(request: Request) -> JSONResponse:
            response = await handler(request)
            self.record(endpoint, request, response.status_code, await _body(request))
            return response  # Starlette keeps the body the handler read, for the record above

        return run

    def record(self, endpoint: str, request: Request, status_code: int, data: dict[str, Any]) -> None:
        folder = self.deployment.folder
        accepted = status_code not in (401, 503)
        client = request.client.host if request.client else "unknown"
        self.deployment.record.audit_trail().append(
            "operator_request",
            str(data.get("who") or self.holder) if accepted else f"unauthenticated caller at {client}",
            str(data.get("why") or "none given"),
            pipeline=folder.name,
            subject=f"{folder.name}/deployment",
            component="operator_api",
            details={
                "endpoint": endpoint,
                "answer": status_code,
                "authenticated_as": self.holder if accepted else None,
                "bento": data.get("bento"),
                "client": client,
            },
        )
