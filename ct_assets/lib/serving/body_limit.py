"""An ASGI middleware that refuses request bodies over a size limit with a 413 and a readable
message, before anything parses them: a body is otherwise read whole into memory (and JSON parsed)
before the row limit can refuse it.

A declared Content-Length over the limit is refused at once, without reading the body; a body
without one (chunked) is read up to the limit and refused as soon as it goes over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BYTES = 64 * 2**20  # well above 10,000 rows of JSON (about 4 MB for flights)


def max_body_bytes() -> int:
    """The limit: CT_MAX_BODY_BYTES, or 64 MiB."""
    return int(os.environ.get("CT_MAX_BODY_BYTES") or DEFAULT_MAX_BYTES)


class BodyLimit:
    """The middleware (see module); `max_bytes` is the limit."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers") or [] if k == b"content-length"), None)
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(send, int(declared))
                return
            await self.app(scope, receive, send)
            return
        # No declared length: read the body here, up to the limit, then hand it on.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send, size, at_least=True)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: int, at_least: bool = False) -> None:
        what = f"{'over ' if at_least else ''}{size:,} bytes"
        body = json.dumps(
            {
                "error": f"request body of {what} is larger than the limit of {self.max_bytes:,} bytes "
                "(CT_MAX_BODY_BYTES); send large batches as several requests"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
