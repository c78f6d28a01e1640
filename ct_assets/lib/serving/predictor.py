"""The request path of a serving slot, shared by the BentoML service and its tests: a request is
parsed and typed (`request_parsing`, `arrow_request_check`), featurized against the online snapshot
(`feature_engine`) and scored (`scoring`), on one thread. The service merges requests that wait
for a worker before featurizing them (`adaptive_batch`, built on `Predictor.score` and
`Predictor.scored`); the prediction log is written by a background thread
(`prediction_log_writer.PredictionLogWriter`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving import arrow_request, arrow_request_check
from ct_assets.lib.serving.feature_engine import FeatureEngine, FeatureRows
from ct_assets.lib.serving.request_parsing import MAX_BATCH_ROWS, TypedRequest, request_columns, rules_for
from ct_assets.lib.serving.scoring import Scored, Scorer, new_request_id

if TYPE_CHECKING:
    from catboost import CatBoostClassifier

    from ct_assets.lib.model.model_training import FeatureLayout

__all__ = ["request_columns"]  # also read by the deploy steps and the traffic driver


def default_workers() -> int:
    """Worker processes per slot unless CT_SERVICE_WORKERS says otherwise: one per core. A worker's
    event loop, batch thread and log writer share one GIL, so one worker cannot keep two cores busy."""
    return max(1, os.cpu_count() or 1)


class Predictor:
    """Validate, featurize and score requests for one model: what the service runs per request."""

    def __init__(
        self,
        spec: PipelineSpec,
        snapshot: Path | None,
        model: CatBoostClassifier,
        layout: FeatureLayout,
        threshold: float,
    ) -> None:
        self.spec = spec
        self.rules = rules_for(spec)
        self.engine = FeatureEngine(spec, snapshot)
        self.scorer = Scorer(model, layout)
        self.threshold = threshold

    def score(self, request: TypedRequest, started: float | None = None) -> Scored:
        """Featurize and score one checked request (the snapshot as last loaded)."""
        started = time.perf_counter() if started is None else started
        features = self.engine.features(request)
        return self.scored(request, features, self.scorer.probabilities(features), started)

    def scored(
        self, request: TypedRequest, features: FeatureRows, probabilities: list[float], started: float
    ) -> Scored:
        """A request's answer and log entry from its features and probabilities (in request order)."""
        spec = self.spec
        return Scored(
            request_id=new_request_id(),
            features=features,
            probabilities=probabilities,
            decisions=[p >= self.threshold for p in probabilities],
            segments={s: request.values(s) for s in spec.segments if s in request},
            event_times=request.values(spec.timestamp_column)
            if spec.timestamp_column in request
            else [None] * len(probabilities),
            seconds=time.perf_counter() - started,
        )

    def check_rows(self, rows: Any, max_rows: int = MAX_BATCH_ROWS) -> TypedRequest:
        """Row-oriented JSON checked and typed by the spec's rules (RequestError if it breaks one)."""
        return TypedRequest(self.rules.check_rows(rows, max_rows))

    def check_columns(self, columns: Any, max_rows: int = MAX_BATCH_ROWS) -> TypedRequest:
        """Column-oriented JSON ({field: [values...]}) checked and typed."""
        return TypedRequest(self.rules.check_columns(columns, max_rows))

    def check_arrow(self, body: bytes, max_rows: int = MAX_BATCH_ROWS) -> TypedRequest:
        """An Arrow IPC stream of the request fields (`arrow_request`) checked and typed
        (`arrow_request_check`)."""
        table = arrow_request.read_stream(body)
        return TypedRequest(table=arrow_request_check.check_table(self.rules, table, max_rows))

    def rows(self, rows: Any, max_rows: int = MAX_BATCH_ROWS, started: float | None = None) -> Scored:
        """Score row-oriented JSON; `started` (perf_counter) is when the request arrived, for latency_ms."""
        started = time.perf_counter() if started is None else started
        return self._score_fresh(self.check_rows(rows, max_rows), started)

    def columns(self, columns: Any, max_rows: int = MAX_BATCH_ROWS, started: float | None = None) -> Scored:
        """Score column-oriented JSON ({field: [values...]})."""
        started = time.perf_counter() if started is None else started
        return self._score_fresh(self.check_columns(columns, max_rows), started)

    def arrow(self, body: bytes, max_rows: int = MAX_BATCH_ROWS, started: float | None = None) -> Scored:
        """Score an Arrow IPC stream of the request fields."""
        started = time.perf_counter() if started is None else started
        return self._score_fresh(self.check_arrow(body, max_rows), started)

    def _score_fresh(self, request: TypedRequest, started: float) -> Scored:
        """Score against the newest published snapshot."""
        self.engine.reload_if_new()
        return self.score(request, started)
