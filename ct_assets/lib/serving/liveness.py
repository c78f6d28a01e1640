"""A slot worker's liveness endpoint, on its own port and thread, apart from request work.

The proxy's health check asks here (`GET /alive` on the slot's health port), not on the port that
serves predictions: a check sent there waits behind whatever the worker is reading, parsing or
scoring, so a slot busy with large bodies would look dead and be marked down. Each worker of a slot
binds the same health port (`SO_REUSEPORT`; the kernel spreads the checks over the workers) and
answers from a thread of its own:

- 200 while the worker's event loop keeps turning: every half second the thread asks the loop to
  run a heartbeat, and the loop is alive while the last heartbeat it ran is younger than
  `stall_seconds` (a loop busy with one large request for a second or two still runs it soon
  after);
- 503 once the loop has not run a heartbeat for `stall_seconds`: the worker hangs, and the proxy
  should stop sending it traffic.

A worker whose process has died answers nothing; the other workers still answer for the slot, and
the proxy's `observe layer4` marks a slot down on the first refused connection for requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PATH = "/alive"
BEAT_SECONDS = 0.5
DEFAULT_STALL_SECONDS = 20.0


class _Server(HTTPServer):
    allow_reuse_address = True
    allow_reuse_port = True  # every worker of the slot binds the same port

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the checker hung up early (HAProxy resets once it has read the status): nothing to log


class Liveness:
    """The endpoint for the event loop `loop` on 127.0.0.1:`port` (see module); `start()` runs it
    in a daemon thread, `close()` stops it."""

    def __init__(
        self, port: int, loop: asyncio.AbstractEventLoop, stall_seconds: float = DEFAULT_STALL_SECONDS
    ) -> None:
        self.loop = loop
        self.stall_seconds = stall_seconds
        self.last_beat = time.monotonic()
        liveness = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != PATH:
                    status, body = 404, b'{"error": "not found"}'
                elif liveness.alive():
                    status, body = 200, b'{"alive": true}'
                else:
                    status, body = 503, b'{"alive": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # a check every half second is not worth a log line

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.service_actions = self._ask_for_beat  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._serve, name="ct-liveness", daemon=True)

    def _serve(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.server.serve_forever(poll_interval=BEAT_SECONDS)

    def _beat(self) -> None:
        self.last_beat = time.monotonic()

    def _ask_for_beat(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the worker is shutting down
            self.loop.call_soon_threadsafe(self._beat)

    def alive(self) -> bool:
        """Has the event loop run a heartbeat within `stall_seconds`?"""
        return time.monotonic() - self.last_beat <= self.stall_seconds

    def start(self) -> Liveness:
        self.thread.start()
        return self

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
