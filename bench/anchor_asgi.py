"""The serving benchmark's bare ASGI anchor: a raw ASGI callable, served by uvicorn, that reads a
request body whole and answers every POST with the same fixed JSON, doing no other work.

Like a slot's worker, each uvicorn worker answers the proxy's health check on CT_HEALTH_PORT from a
thread of its own (`ct_assets.lib.serving.liveness`), started at lifespan startup, so HAProxy can
run the slot's configuration in front of it.

Run by `serving_anchors`: `uvicorn anchor_asgi:app --workers N` from the bench folder.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from anchor_answer import ANSWER

from ct_assets.lib.serving.liveness import Liveness

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
_liveness: list[Liveness] = []


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            port = os.environ.get("CT_HEALTH_PORT")
            if port:
                _liveness.append(Liveness(int(port), asyncio.get_running_loop()).start())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for each in _liveness:
                each.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Read the body, answer ANSWER."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
