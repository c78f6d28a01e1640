"""The prediction service: one pipeline's champion, served by BentoML.

A request carries what a caller knows about each row (for flights, the flight's own scheduled
fields); the service validates it, computes the features with the pipeline's own SQL against the
online snapshot (the same code the training path runs), and answers probability, decision and the
model version. Malformed requests get a 400 with a readable message, never a 500. Every
prediction is appended to the prediction log; the service never opens the warehouse.

Configuration (environment): CT_ONLINE_SNAPSHOT (snapshot folder), CT_PREDICTION_LOG (log
folder), CT_SLOT (blue or green).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import InvalidArgument

HERE = Path(__file__).resolve().parent
# A bento carries the tag of its model beside the service; CT_BENTO_MODEL overrides it in development.
MODEL_TAG = os.environ.get("CT_BENTO_MODEL") or (
    (HERE / "model_tag.txt").read_text().strip()
    if (HERE / "model_tag.txt").exists()
    else "flights_delay:latest"
)


@bentoml.service(name="ct_tabular_service", traffic={"timeout": 30, "max_concurrency": 64})
class TabularModelService:
    model_ref = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        from ct_assets.lib.model_store import load_model
        from ct_assets.lib.model_training import FeatureLayout
        from ct_assets.lib.spec import load_spec

        # Serving hands the service the stored model; a plain instantiation still holds the reference.
        stored = self.model_ref.resolve() if hasattr(self.model_ref, "resolve") else self.model_ref
        meta = stored.info.metadata
        self.spec = load_spec(Path(os.environ.get("CT_SPEC", HERE / "pipeline" / "spec.yaml")))
        self.model = load_model(Path(stored.path), meta["model_sha256"])
        self.layout = FeatureLayout(**meta["layout"])
        self.threshold = float(meta["threshold"])
        self.version = str(meta["model_version"])
        self.snapshot = Path(os.environ.get("CT_ONLINE_SNAPSHOT", ""))
        self.log_folder = Path(os.environ.get("CT_PREDICTION_LOG", "prediction_log"))
        self.slot = os.environ.get("CT_SLOT", "default")
        self.injected_delay = float(os.environ.get("CT_INJECT_LATENCY_MS", "0")) / 1000
        from ct_assets.lib.serving import FeatureEngine

        self.engine = FeatureEngine(self.spec, self.snapshot)

    def _score(self, rows: Any, pipeline: str | None) -> dict[str, Any]:
        import time

        from ct_assets.lib import model_training, serving

        started = time.perf_counter()
        if self.injected_delay:  # chaos testing only: CT_INJECT_LATENCY_MS
            time.sleep(self.injected_delay)
        if pipeline is not None and pipeline != self.spec.name:
            raise InvalidArgument(f"unknown pipeline {pipeline!r}: this service serves {self.spec.name!r}")
        try:
            self.engine.reload_if_new()
            typed = serving.validate_request(rows, self.spec, engine=self.engine)
        except serving.RequestError as err:
            raise InvalidArgument(str(err)) from None
        features = self.engine.features(typed)
        probabilities = model_training.score(self.model, features, self.layout)
        request_id = serving.new_request_id()
        predictions = [
            serving.Prediction(request_id, str(entity), float(p), bool(p >= self.threshold), self.version)
            for entity, p in zip(features[self.spec.entity_id], probabilities, strict=True)
        ]
        segments = {s: typed[s].tolist() for s in self.spec.segments if s in typed}
        latency_ms = (time.perf_counter() - started) * 1000
        serving.log_predictions(
            self.log_folder, self.spec, predictions, features, segments, self.slot, latency_ms
        )
        return {
            "request_id": request_id,
            "model_version": self.version,
            "slot": self.slot,
            "threshold": self.threshold,
            "predictions": [
                {"id": p.entity_id, "probability": p.probability, "decision": p.decision} for p in predictions
            ],
        }

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]], pipeline: str | None = None) -> dict[str, Any]:
        """Row-oriented: a list of objects, one per row."""
        return self._score(rows, pipeline)

    @bentoml.api
    def predict_columns(self, columns: dict[str, list[Any]], pipeline: str | None = None) -> dict[str, Any]:
        """Column-oriented: one list of values per field (cheaper to encode for large batches)."""
        from ct_assets.lib import serving

        try:
            rows = serving.rows_from_columns(columns)
        except serving.RequestError as err:
            raise InvalidArgument(str(err)) from None
        return self._score(rows, pipeline)

    @bentoml.api(route="/version")
    def model_version(self) -> dict[str, Any]:
        return {"pipeline": self.spec.name, "model_version": self.version, "slot": self.slot}
