"""HAProxy's own answers (no slot up, a slot that gave no answer or none in time) in the shape of
every refusal: `{"error": "<one readable line>", "request_id": "<id>"}` as JSON, with the id in the
`x-request-id` header too (`ct_assets.lib.serving.error_body`).

The request id is the caller's `X-Request-ID` when it is short and plain (the service's own rule,
`quiet_log.new_request_id`: printable ASCII without spaces, at most 64 characters), else HAProxy's
unique id for the request (32 hex digits). The proxy passes that id on to the slot in
`X-Request-ID`, so a slot that answers uses the same one. A request HAProxy refuses before it reads
the caller's header (its body came too slowly, say) gets HAProxy's unique id.

HAProxy 2.6 answers a connection whose bytes are not HTTP at all (400), or whose headers do not
arrive in time (408), with its built-in HTML page: that answer is written before any request
exists, and only an empty error file could replace it there.
"""

from __future__ import annotations

import json

# The caller's id as the service accepts it: printable ASCII without spaces, 1 to 64 characters.
CALLER_ID = r"^[!-~]{1,64}$"
HAPROXY_ID = "%[uuid(4),regsub(-,,g)]"
REQUEST_ID = "%[var(txn.request_id)]"
UNIQUE_ID = "%[unique-id]"

# What each status HAProxy generates means here, and whether the caller's id is known by then.
MESSAGES: dict[int, tuple[str, bool]] = {
    400: ("the request is not valid HTTP", False),
    408: ("the request did not arrive in time", False),
    413: ("the request is too large for the proxy", False),
    500: ("the proxy failed on this request", True),
    501: ("the request uses an HTTP feature the proxy does not support", False),
    502: ("the serving slot gave no valid answer", True),
    503: ("no serving slot could take the request: none is up, or all stayed busy for {queue}", True),
    504: ("the serving slot did not answer in time", True),
}


def defaults_lines(queue_timeout: str) -> list[str]:
    """The `defaults` lines: HAProxy's unique id per request and each error answer in JSON (the 503
    names how long a request waits in the queue, `queue_timeout` as HAProxy writes it: `10s`)."""
    lines = [f"unique-id-format {HAPROXY_ID}"]
    for status, (template, after_rules) in MESSAGES.items():
        message = template.format(queue=queue_timeout.replace("s", " s"))
        if "'" in message or "%" in message:
            raise ValueError(f"a proxy error message cannot hold ' or %: {message}")
        fetch = REQUEST_ID if after_rules else UNIQUE_ID
        body = json.dumps({"error": message, "request_id": "ID"}).replace('"ID"', f'"{_as_json(fetch)}"')
        lines.append(
            f"http-error status {status} content-type application/json lf-string '{body}' "
            f"hdr x-request-id {fetch}"
        )
    return lines


def frontend_lines() -> list[str]:
    """The frontend's request rules: pick the request id and pass it on to the slot."""
    return [
        "http-request set-var(txn.request_id) req.fhdr(x-request-id)"
        f" if {{ req.fhdr(x-request-id) -m reg {CALLER_ID} }}",
        "http-request set-var(txn.request_id) unique-id unless { var(txn.request_id) -m found }",
        f"http-request set-header x-request-id {REQUEST_ID}",
    ]


def _as_json(fetch: str) -> str:
    """A sample fetch escaped for use inside a JSON string (a caller's id may hold `"` or `\\`)."""
    return fetch.removesuffix("]") + ",json(utf8s)]"
