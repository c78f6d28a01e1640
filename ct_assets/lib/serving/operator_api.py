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
from typing import Any

from ct_assets.lib.serving.rollout import Deployment

TOKEN_VARIABLE = "CT_OPERATOR_TOKEN"
NAME_VARIABLE = "CT_OPERATOR_NAME"  # who holds the token, for the audit log (default "operator api")


def create_app(
    deployment: Deployment, rollout: Callable[[str, str], Any] | None = None, token: str | None = None
) -> Any:
    """A Starlette app over one pipeline's deployment. `rollout(bento, who)` runs a rollout."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    expected = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")

    def authorized(request: Request) -> JSONResponse | None:
        if not expected:
            return JSONResponse(
                {"error": f"operator API disabled: {TOKEN_VARIABLE} is not set"}, status_code=503
            )
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"error": "missing or wrong operator token"}, status_code=401)
        return None

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    async def status(request: Request) -> JSONResponse:
        if refused := authorized(request):
            return refused
        return JSONResponse({"state": deployment.state(), "audit": deployment.audit_log()[-20:]})

    async def rollback(request: Request) -> JSONResponse:
        if refused := authorized(request):
            return refused
        data = await body(request)
        why, who = str(data.get("why") or ""), str(data.get("who") or holder)
        if not why:
            return JSONResponse({"error": "a rollback needs 'why'"}, status_code=422)
        try:
            result = deployment.rollback_to_previous(who=who, why=why)
        except RuntimeError as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        return JSONResponse({"status": result.status, "slot": result.slot, "bento": result.bento})

    async def approve(request: Request) -> JSONResponse:
        if refused := authorized(request):
            return refused
        data = await body(request)
        try:
            result = deployment.approve(
                who=str(data.get("who") or holder), why=str(data.get("why") or "approved")
            )
        except RuntimeError as err:
            return JSONResponse({"error": str(err)}, status_code=409)
        return JSONResponse({"status": result.status, "slot": result.slot, "bento": result.bento})

    async def start_rollout(request: Request) -> JSONResponse:
        if refused := authorized(request):
            return refused
        data = await body(request)
        bento = str(data.get("bento") or "")
        if not bento or rollout is None:
            return JSONResponse({"error": "a rollout needs 'bento'"}, status_code=422)
        result = rollout(bento, str(data.get("who") or holder))
        return JSONResponse({"status": result.status, "slot": result.slot, "reasons": result.reasons})

    holder = os.environ.get(NAME_VARIABLE) or "operator api"

    def audited(endpoint: str, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def run(request: Request) -> JSONResponse:
            from ct_assets.lib.governance.audit import log_for

            response = await handler(request)
            data = await body(request)  # Starlette keeps the body read by the handler
            accepted = response.status_code not in (401, 503)
            client = request.client.host if request.client else "unknown"
            log_for(deployment.folder.parent).append(
                "operator_request",
                str(data.get("who") or holder) if accepted else f"unauthenticated caller at {client}",
                str(data.get("why") or "none given"),
                pipeline=deployment.folder.name,
                subject=f"{deployment.folder.name}/deployment",
                component="operator_api",
                details={
                    "endpoint": endpoint,
                    "answer": response.status_code,
                    "authenticated_as": holder if accepted else None,
                    "bento": data.get("bento"),
                    "client": client,
                },
            )
            return response

        return run

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/rollback", audited("rollback", rollback), methods=["POST"]),
            Route("/approve", audited("approve", approve), methods=["POST"]),
            Route("/rollout", audited("rollout", start_rollout), methods=["POST"]),
        ]
    )
