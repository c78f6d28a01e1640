"""Quiet serving logs: a refused request (4xx) is one line at INFO with its request id; only a
server fault (5xx) keeps a traceback.

BentoML logs every exception an API raises at ERROR with its traceback, bad input included
(`log_exception`). `install` puts a filter on that logger which rewrites the record of a client
error (a BentoML exception with a 4xx code, or pydantic's validation error) into one INFO line:
`refused POST /predict (400) request_id=...: <message, cut short>`. `log_refused` writes the same
line for requests answered before BentoML sees them (`request_gate`). The request id comes from
`REQUEST_ID`, which the request gate sets for each request it sees (a caller's `X-Request-ID`, or
a new one), and which the gate also returns as the `x-request-id` response header.
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("ct_request_id", default=None)
# Under BentoML's logger: a slot's log handlers and level are configured there.
LOGGER = logging.getLogger("bentoml.ct_assets")
BENTOML_LOGGER = "bentoml._internal.server.http_app"
MESSAGE_CHARS = 300


def new_request_id(given: str | None = None) -> str:
    """A caller's request id if it is short and plain, else a new one."""
    if given and len(given) <= 64 and given.isascii() and given.isprintable() and " " not in given:
        return given
    return uuid.uuid4().hex


def refused_line(method: str, path: str, status: int, message: str) -> str:
    text = " ".join(message.split())  # one line, whatever the message holds
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS] + "…"
    return f"refused {method} {path} ({status}) request_id={REQUEST_ID.get() or '-'}: {text}"


def log_refused(method: str, path: str, status: int, message: str) -> None:
    LOGGER.info(refused_line(method, path, status, message))


def client_error_status(error: BaseException | None) -> int | None:
    """The 4xx status BentoML answers for `error`, or None if it is a server fault."""
    if error is None:
        return None
    if type(error).__name__ == "ValidationError" and type(error).__module__.startswith("pydantic"):
        return 400
    code = getattr(error, "error_code", None)
    status = getattr(code, "value", code)
    if isinstance(status, int) and 400 <= status < 500:
        return status
    return None


class ClientErrorsAsOneLine(logging.Filter):
    """The filter (see module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = client_error_status(error)
        if status is None:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        path, method = (*args, "?", "?")[:2]
        record.msg = refused_line(str(method), str(path), status, str(error))
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install() -> None:
    """Put the filter on BentoML's API error logger (once per process)."""
    logger = logging.getLogger(BENTOML_LOGGER)
    if not any(isinstance(f, ClientErrorsAsOneLine) for f in logger.filters):
        logger.addFilter(ClientErrorsAsOneLine())
