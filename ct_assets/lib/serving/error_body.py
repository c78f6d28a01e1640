"""The one shape of a refused prediction request's answer: a JSON object
`{"error": "<one readable line>", "request_id": "<id>"}`.

Refusals come from several places: the request gate and the body limit (already this shape, without
the id), the service's own checks (which BentoML answers as a one-element list of that object), and
BentoML's parsing of a JSON body into the API's arguments (pydantic's validation errors: a summary,
a `detail` list with pydantic's codes and documentation links). `reshaped` turns any of them into
the one shape; `envelope_message` words pydantic's errors about the body as a whole (empty, not
JSON, not UTF-8, not an object, no `rows`) for the route's envelope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson

# What each JSON route's body holds, as a message shows it.
ENVELOPES = {"rows": '{"rows": [...]}', "columns": '{"columns": {...}}'}
# What a field of the envelope must hold (the same words as the service's own checks).
FIELD_SHAPES = {
    "rows": "rows must be a non-empty list of objects",
    "columns": "columns must be an object mapping each field to a list of values",
    "pipeline": "pipeline must be a string naming the served pipeline",
}
MAX_CHARS = 4000


def error_json(message: str, request_id: str | None) -> bytes:
    """The answer's body: the message as one line, with the request id when there is one."""
    line = " ".join(message.split()) or "the request was refused"
    if len(line) > MAX_CHARS:
        line = f"{line[:MAX_CHARS]}…"
    body: dict[str, str] = {"error": line}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def reshaped(body: bytes, status: int, envelope: str | None, empty: bool, request_id: str | None) -> bytes:
    """An error answer's body (`body`, as whoever refused wrote it) in the one shape. `envelope` is
    the route's JSON field (`rows`, `columns`; None for a route that takes no JSON); `empty` says
    the request came without a body."""
    return error_json(error_message(body, status, envelope, empty), request_id)


def error_message(body: bytes, status: int, envelope: str | None, empty: bool) -> str:
    """The readable line in an error answer's body, whatever its shape."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip() or _phrase(status)
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]  # BentoML answers an API's own 4xx as a one-element list
    if not isinstance(parsed, dict):
        return _phrase(status)
    detail = parsed.get("detail")
    if envelope is not None and isinstance(detail, list) and detail:
        return envelope_message(detail, envelope, empty)
    error = parsed.get("error")
    return error if isinstance(error, str) and error else _phrase(status)


def envelope_message(errors: Sequence[Mapping[str, Any]], envelope: str, empty: bool) -> str:
    """pydantic's errors about a JSON body (`type`, `loc`, `msg` each) as one readable line."""
    wanted = f"the body must be a JSON object {ENVELOPES.get(envelope, '{...}')}"
    if empty:
        return f"the body is empty: {wanted}"
    lines = [_envelope_error(error, envelope, wanted) for error in errors]
    return "; ".join(dict.fromkeys(lines))


def _envelope_error(error: Mapping[str, Any], envelope: str, wanted: str) -> str:
    kind = str(error.get("type", ""))
    loc = [str(part) for part in error.get("loc") or []]
    said = str(error.get("msg", "")).removeprefix("Invalid JSON: ")
    if kind == "json_invalid":
        if "unicode" in said:
            return f"the body is not valid UTF-8 ({said}): send JSON encoded as UTF-8"
        return f"the body is not valid JSON ({said}): {wanted}"
    if not loc:
        return wanted
    if kind == "missing" and loc == [envelope]:
        return f'{wanted}: it has no "{envelope}" field'
    if loc[0] in FIELD_SHAPES:
        return FIELD_SHAPES[loc[0]]
    return f"{'.'.join(loc)}: {said.lower() or kind}"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"refused with status {status}"
