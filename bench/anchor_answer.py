"""The fixed answer of the serving benchmark's anchors: the shape of the service's answer to one
row (`scoring.answer`), encoded once."""

from __future__ import annotations

from typing import Any

import orjson

ANSWER_BODY: dict[str, Any] = {
    "request_id": "anchor",
    "model_version": "anchor",
    "slot": "anchor",
    "threshold": 0.5,
    "predictions": [{"id": "anchor", "probability": 0.5, "decision": False}],
}
ANSWER = orjson.dumps(ANSWER_BODY)
