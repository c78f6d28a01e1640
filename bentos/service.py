"""The prediction service: one pipeline's champion, served by BentoML.

A request carries what a caller knows about each row (for flights, the flight's own scheduled
fields); the service validates it, computes the features with the pipeline's own SQL against the
online snapshot (the same code the training path runs), and answers probability, decision and the
model version. Requests that arrive while the worker is busy are featurized and scored together
(`adaptive_batch`); each still gets its own answer. Malformed requests get a 4xx, never a 500,
answered as `{"error": "<one readable line>", "request_id": "<id>"}` (`request_gate`). Every
prediction is appended to the prediction log by a background writer (off the request path; drained
on shutdown), except a rollout's compatibility check (`request_gate.ROLLOUT_CHECK`); the service
never opens the warehouse.

Endpoints: POST /predict (rows as JSON objects), /predict_columns (one JSON list per field) and
/predict_arrow (an Arrow IPC stream in and out: the cheapest form for large batches); GET /version;
BentoML's /metrics (requests, latency, errors) with the slot's rows scored, requests per feature
query and worker memory (`slot_metrics`).

Configuration (environment): CT_SPEC (the pipeline's spec; default the one the bento carries, whose
name also names the model when the bento carries no model tag), CT_ONLINE_SNAPSHOT (snapshot
folder), CT_PREDICTION_LOG (log folder), CT_SLOT (blue or green), CT_SERVICE_WORKERS (worker
processes per slot, default one per core, `predictor.default_workers`: each has its own copy of the
model and the snapshot), CT_ACCESS_LOG=1 (BentoML's per-request access log, off by default),
CT_HEALTH_PORT (each worker answers the proxy's health check there, from a thread of its own:
`liveness`), CT_MAX_BODY_BYTES (larger request bodies get a 413 before anything parses them; 64 MiB
by default; an Arrow body whose compressed buffers would decompress past it gets a 413 before anything is
decompressed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import os
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import bentoml
import orjson
import yaml
from bentoml.exceptions import InvalidArgument
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.serving import arrow_request, quiet_log
from ct_assets.lib.serving.adaptive_batch import AdaptiveBatcher
from ct_assets.lib.serving.arrow_request import BodyTooLarge
from ct_assets.lib.serving.body_limit import BodyLimit, max_body_bytes
from ct_assets.lib.serving.liveness import Liveness
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets.lib.serving.predictor import Predictor, default_workers
from ct_assets.lib.serving.request_gate import ROLLOUT_CHECK, RequestGate
from ct_assets.lib.serving.request_parsing import RequestError
from ct_assets.lib.serving.scoring import answer, answer_arrow, log_scored
from ct_assets.lib.serving.slot_metrics import SlotMetrics

# Under BentoML's logger: a slot's log handlers and level are configured there.
LOGGER = quiet_log.LOGGER
# Longest error message answered: a message lists at most 20 problems, each quoting input short.
MAX_ERROR_CHARS = 4000

HERE = Path(__file__).resolve().parent
SPEC_PATH = Path(os.environ.get("CT_SPEC") or HERE / "pipeline" / "spec.yaml")


def _model_tag() -> str:
    """The model this service serves: CT_BENTO_MODEL (development), else the tag the bento carries
    beside the service, else the newest model of the pipeline whose spec the bento carries."""
    if os.environ.get("CT_BENTO_MODEL"):
        return os.environ["CT_BENTO_MODEL"]
    if (HERE / "model_tag.txt").exists():
        return (HERE / "model_tag.txt").read_text().strip()

    try:
        name = (yaml.safe_load(SPEC_PATH.read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError) as err:
        raise RuntimeError(f"no model tag and no readable pipeline spec at {SPEC_PATH}: {err}") from err
    if not isinstance(name, str):
        raise RuntimeError(f"the pipeline spec at {SPEC_PATH} has no name")
    return f"{name}:latest"


MODEL_TAG = _model_tag()


WORKERS = int(os.environ.get("CT_SERVICE_WORKERS") or default_workers())
# Requests one worker admits at once; more get a 429. BentoML divides `max_concurrency` among the
# workers, and the kernel spreads connections over them unevenly, so the service-wide figure is this
# times the workers (a service-wide figure alone leaves one worker short while another idles).
MAX_CONCURRENCY_PER_WORKER = 64


# BentoML's access log writes a line per request from the worker, in its CPU time; every
# prediction is in the prediction log anyway. CT_ACCESS_LOG=1 turns it back on.
ACCESS_LOG = os.environ.get("CT_ACCESS_LOG", "0") == "1"


async def _predict_arrow(request: Request) -> Response:
    """POST /predict_arrow: an Arrow IPC stream of the request fields in, an Arrow IPC stream of
    id, probability and decision out (`scoring.answer_arrow`); `?pipeline=` as in the JSON APIs.
    Mounted beside the BentoML APIs (same server, middlewares and metrics), because a BentoML API
    reads its body as JSON or multipart."""
    service: TabularModelService = bentoml.get_current_service()
    media_type = request.headers.get("content-type", "").split(";")[0].strip()
    if media_type != arrow_request.MEDIA_TYPE:
        wanted = f"send an Arrow IPC stream with content-type {arrow_request.MEDIA_TYPE}"
        return JSONResponse({"error": f"{wanted}, got {media_type!r}"}, status_code=415)
    try:
        answer = await service.score_arrow(await request.body(), request.query_params.get("pipeline"))
    except InvalidArgument as err:
        status = int(err.error_code)
        quiet_log.log_refused("POST", "/predict_arrow", status, str(err))
        return JSONResponse({"error": str(err)}, status_code=status)
    return Response(answer, media_type=arrow_request.MEDIA_TYPE)


async def _version(request: Request) -> Response:
    """GET /version: the same answer as POST /version (BentoML's APIs take POST only)."""
    service: TabularModelService = bentoml.get_current_service()
    return JSONResponse(service.version_info())


ARROW_APP = Starlette(
    routes=[
        Route("/predict_arrow", _predict_arrow, methods=["POST"]),
        Route("/version", _version, methods=["GET"]),
    ]
)


@bentoml.asgi_app(ARROW_APP, path="/", name="arrow")
@bentoml.service(
    name="ct_tabular_service",
    workers=WORKERS,
    traffic={"timeout": 30, "max_concurrency": MAX_CONCURRENCY_PER_WORKER * WORKERS},
    logging={"access": {"enabled": ACCESS_LOG}},
)
class TabularModelService:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:

        # Serving hands the service the stored model; a plain instantiation still holds the reference.
        stored = self.model_ref.resolve() if hasattr(self.model_ref, "resolve") else self.model_ref
        meta = stored.info.metadata
        self.spec = load_spec(SPEC_PATH)
        model = load_model(Path(stored.path), meta["model_sha256"])
        self.threshold = float(meta["threshold"])
        self.version = str(meta["model_version"])
        snapshot = Path(os.environ.get("CT_ONLINE_SNAPSHOT", ""))
        self.slot = os.environ.get("CT_SLOT", "default")
        self.injected_delay = float(os.environ.get("CT_INJECT_LATENCY_MS", "0")) / 1000
        self.allocator = os.environ.get("CT_SLOT_ALLOCATOR", "glibc")  # set by `allocator.allocator_env`
        layout = FeatureLayout(**meta["layout"])
        self.predictor = Predictor(self.spec, snapshot, model, layout, self.threshold)
        log_folder = Path(os.environ.get("CT_PREDICTION_LOG", "prediction_log"))
        self.log = PredictionLogWriter(log_folder, self.spec, self.slot)
        self.metrics = SlotMetrics(self.slot, self.version)
        self.batcher = AdaptiveBatcher(self.predictor, on_batch=self.metrics.observe_batch)
        self.liveness = _start_liveness()
        # Everything loaded so far lives as long as the worker: moved out of the collector's
        # reach, a full collection no longer walks it and pauses no request for it.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        """Finish the batch in flight, then write what the log writer still holds."""
        self.batcher.close()
        self.log.close()
        if self.liveness is not None:
            self.liveness.close()

    async def _scored(self, check: Any, payload: Any, pipeline: str | None) -> Any:
        """Check a request (any form: `check` types it), score it with whatever else waits
        (`adaptive_batch`) and log it; bad requests raise InvalidArgument (a 400)."""

        started = time.perf_counter()  # latency_ms in the log counts from here (the injected delay too)
        if self.injected_delay:  # chaos testing only: CT_INJECT_LATENCY_MS
            await asyncio.sleep(self.injected_delay)
        if pipeline is not None and pipeline != self.spec.name:
            raise InvalidArgument(f"unknown pipeline {pipeline!r}: this service serves {self.spec.name!r}")
        try:
            request = check(payload)
        except BodyTooLarge as err:  # an Arrow body that decompresses past the body limit
            raise InvalidArgument(_short(err), error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
        except RequestError as err:
            raise InvalidArgument(_short(err)) from None
        except Exception as err:  # a body the checks did not foresee: still the caller's input, a 400
            LOGGER.warning("request check failed on unforeseen input", exc_info=True)
            raise InvalidArgument(f"the request cannot be read ({type(err).__name__})") from None
        scored = await self.batcher.score(request, started)
        gate_id = quiet_log.REQUEST_ID.get()  # the caller's X-Request-ID or the gate's, in the header
        if gate_id:  # one id in the header, the answer and the prediction log (for `ct lineage`)
            scored = dataclasses.replace(scored, request_id=gate_id)
        if not ROLLOUT_CHECK.get():  # a rollout's compatibility check is not served traffic
            log_scored(self.log, scored, self.version)
        self.metrics.observe(len(scored.probabilities))
        return scored

    async def _score(self, check: Any, payload: Any, pipeline: str | None) -> Response:
        """Score a request and answer it as JSON, encoded here: BentoML would otherwise check the
        answer against a schema it rebuilds for every response."""

        scored = await self._scored(check, payload, pipeline)
        body = answer(scored, self.version, self.slot, self.threshold, self.spec.entity_id)
        return Response(orjson.dumps(body), media_type="application/json")

    async def score_arrow(self, body: bytes, pipeline: str | None) -> bytes:
        """Score an Arrow IPC stream; the answer as an Arrow IPC stream (see `_predict_arrow`)."""

        scored = await self._scored(self.predictor.check_arrow, body, pipeline)
        return answer_arrow(scored, self.version, self.slot, self.threshold, self.spec.entity_id)

    # The endpoints are coroutines on purpose: a request is read, checked and answered on the event
    # loop (no hop to BentoML's thread pool), and only featurizing and scoring go to the batcher's
    # thread, where requests that wait are merged. The annotations describe the JSON answer, which
    # _score returns already encoded.
    @bentoml.api
    async def predict(self, rows: list[Any], pipeline: str | None = None) -> dict[str, Any]:
        """Row-oriented: a list of objects, one per row."""
        return await self._score(self.predictor.check_rows, rows, pipeline)  # type: ignore[return-value]

    @bentoml.api
    async def predict_columns(self, columns: dict[str, Any], pipeline: str | None = None) -> dict[str, Any]:
        """Column-oriented: one list of values per field (cheaper to encode and check for large batches)."""
        return await self._score(self.predictor.check_columns, columns, pipeline)  # type: ignore[return-value]

    @bentoml.api(route="/version")
    def model_version(self) -> dict[str, Any]:
        return self.version_info()

    def version_info(self) -> dict[str, Any]:
        """The served pipeline, model version, slot and allocator (POST and GET /version)."""
        return {
            "pipeline": self.spec.name,
            "model_version": self.version,
            "slot": self.slot,
            "allocator": self.allocator,
        }


def _start_liveness() -> Any:
    """The worker's liveness endpoint on CT_HEALTH_PORT (None without one, or outside a server's
    event loop, as when a test instantiates the service)."""

    port = os.environ.get("CT_HEALTH_PORT")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return Liveness(int(port), loop).start() if port else None


def _short(err: Exception) -> str:
    text = str(err)
    return text if len(text) <= MAX_ERROR_CHARS else f"{text[:MAX_ERROR_CHARS]}…"


@functools.cache
def _pipeline_name() -> str:

    return load_spec(SPEC_PATH).name


quiet_log.install()
# The first middleware added is the outermost. The gate checks query parameters, media type and
# content encoding (a gzip body decoded within CT_MAX_BODY_BYTES), gives each request its id and
# shapes every error answer inside it; then bodies over CT_MAX_BODY_BYTES get a 413 before anything
# reads them; then BentoML parses a body.
TabularModelService.add_asgi_middleware(RequestGate, pipeline=_pipeline_name, max_bytes=max_body_bytes())
TabularModelService.add_asgi_middleware(BodyLimit, max_bytes=max_body_bytes())
