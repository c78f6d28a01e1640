"""The operator API: status, rollout, approve and rollback over HTTP, behind a bearer token.

The token is read from the environment (`CT_OPERATOR_TOKEN`) and never logged; without it every
operator endpoint refuses. The prediction API stays open on loopback; only these endpoints need it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Any

from ct_assets.lib.rollout import Deployment

TOKEN_VARIABLE = "CT_OPERATOR_TOKEN"


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
        why, who = str(data.get("why") or ""), str(data.get("who") or "operator api")
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
                who=str(data.get("who") or "operator api"), why=str(data.get("why") or "approved")
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
        result = rollout(bento, str(data.get("who") or "operator api"))
        return JSONResponse({"status": result.status, "slot": result.slot, "reasons": result.reasons})

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/rollback", rollback, methods=["POST"]),
            Route("/approve", approve, methods=["POST"]),
            Route("/rollout", start_rollout, methods=["POST"]),
        ]
    )
