"""The serving benchmark's BentoML hello anchor: a BentoML 1.4 service whose one API, `/predict`,
takes the same body as the prediction service's (`{"rows": [...]}`) and returns a constant, doing
no other work.

It is configured like the prediction service where that touches a request's cost: CT_SERVICE_WORKERS
worker processes, the same traffic limits, BentoML's access log off; each worker answers the
proxy's health check on CT_HEALTH_PORT from a thread of its own (`ct_assets.lib.serving.liveness`),
so HAProxy can run the slot's configuration in front of it. The constant goes through BentoML's own
output handling (a plain `@bentoml.api` returning a dict), as a hello service's does.

Run by `serving_anchors`: `bentoml serve anchor_hello:HelloService` from the bench folder.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import bentoml
from anchor_answer import ANSWER_BODY

from ct_assets.lib.serving.liveness import Liveness

WORKERS = int(os.environ.get("CT_SERVICE_WORKERS") or os.cpu_count() or 1)


@bentoml.service(
    name="ct_bench_hello",
    workers=WORKERS,
    traffic={"timeout": 30, "max_concurrency": 64 * WORKERS},
    logging={"access": {"enabled": False}},
)
class HelloService:
    def __init__(self) -> None:
        port = os.environ.get("CT_HEALTH_PORT")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.liveness = Liveness(int(port), loop).start() if port and loop else None

    @bentoml.api
    async def predict(self, rows: list[Any]) -> dict[str, Any]:
        return ANSWER_BODY
