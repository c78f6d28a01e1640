"""Scoring and its outputs: CatBoost probabilities from feature rows without pandas, the scored
request (`Scored`), the service's JSON and Arrow answers, and the hand-over to the prediction log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.model_training import MISSING_CATEGORY
from ct_assets.lib.serving import arrow_request
from ct_assets.lib.serving.feature_engine import FeatureRows
from ct_assets.lib.serving.prediction_log_stream import write_now

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from catboost import CatBoostClassifier

    from ct_assets.lib.model.model_training import FeatureLayout
    from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter


class Scorer:
    """CatBoost probabilities straight from feature rows: the same inputs `model_training.model_inputs`
    builds (categoricals as text with nulls as their own category, numerics as floats), without pandas.

    The probabilities are calibrated: the model version's Platt calibration is stored in the
    artifact as CatBoost's scale and bias (`ct_assets.lib.model.calibration`), which every
    `predict_proba` applies, so the Scorer serves what the evaluation judged."""

    def __init__(self, model: CatBoostClassifier, layout: FeatureLayout) -> None:
        self.model = model
        self.layout = layout

    def probabilities(self, features: FeatureRows) -> list[float]:
        import numpy as np
        from catboost import FeaturesData

        count = len(features)
        if count == 0:
            return []
        if count == 1:  # one row: a plain list is the cheapest input
            row = features.rows[0]
            index = {name: i for i, name in enumerate(features.names)}
            values = [
                MISSING_CATEGORY if row[index[c]] is None else str(row[index[c]])
                for c in self.layout.categorical
            ]
            values += [
                float("nan") if row[index[c]] is None else float(row[index[c]]) for c in self.layout.numeric
            ]
            return [float(self.model.predict_proba([values], thread_count=1)[0, 1])]
        import pyarrow as pa
        import pyarrow.compute as pc

        table = features.table if features.table is not None else pa.Table.from_pydict(features.columns)
        cat = np.empty((count, len(self.layout.categorical)), dtype=object)
        for position, name in enumerate(self.layout.categorical):
            cat[:, position] = _categories(table.column(name).combine_chunks(), MISSING_CATEGORY)
        num = np.empty((count, len(self.layout.numeric)), dtype=np.float32)
        for position, name in enumerate(self.layout.numeric):
            values = table.column(name).combine_chunks().cast(pa.float64())
            num[:, position] = pc.fill_null(values, np.nan).to_numpy()
        data = FeaturesData(
            num_feature_data=num,
            cat_feature_data=cat,
            num_feature_names=list(self.layout.numeric),
            cat_feature_names=list(self.layout.categorical),
        )
        # One thread: a slot runs a worker per core, so more threads per request only add overhead.
        return self.model.predict_proba(data, thread_count=1)[:, 1].tolist()


def _categories(values: pa.Array, missing: str) -> Any:
    """A categorical column as text, nulls as their own category (as `model_inputs` does: text
    columns as they are, other types through `str`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.fill_null(values, missing).to_numpy(zero_copy_only=False)
    return np.array([missing if v is None else str(v) for v in values.to_pylist()], dtype=object)


@dataclass(frozen=True)
class Prediction:
    request_id: str
    entity_id: str
    probability: float
    decision: bool
    model_version: str


@dataclass(frozen=True)
class Scored:
    """One scored request: the answer, and what the prediction log needs."""

    request_id: str
    features: FeatureRows
    probabilities: list[float]
    decisions: list[bool]
    segments: dict[str, Any]  # per segment: a list, or an Arrow array (see TypedRequest.values)
    event_times: Any
    seconds: float


def log_scored(writer: PredictionLogWriter, scored: Scored, model_version: str) -> None:
    """Hand a scored request to the background log writer (one row per prediction, written later;
    lists and Arrow columns are turned into log rows in the writer's thread)."""
    writer.submit(
        {
            "request_id": scored.request_id,
            "time": datetime.now(UTC).isoformat(),
            "model_version": model_version,
            "entity_ids": scored.features.arrow_column(writer.spec.entity_id)
            if scored.features.table is not None
            else [str(i) for i in scored.features.column(writer.spec.entity_id)],
            "scores": scored.probabilities,
            "decisions": scored.decisions,
            "latency_ms": scored.seconds * 1000,
            "event_times": scored.event_times,
            "segments": scored.segments,
            "feature_names": scored.features.names,
            "feature_rows": scored.features,
        }
    )


def log_predictions(
    folder: Path,
    spec: PipelineSpec,
    predictions: list[Prediction],
    features: pd.DataFrame,
    segments: dict[str, list[Any]],
    slot: str,
    latency_ms: float | None = None,
    event_times: list[Any] | None = None,
) -> Path:
    """Write one request's predictions (one request id) to the log now, in the caller's thread, as
    a file of their own (`prediction_log_stream.write_now`); returns its path."""
    if len({p.request_id for p in predictions}) > 1:
        raise ValueError("log_predictions writes one request: the predictions carry several request ids")
    batch = {
        "request_id": predictions[0].request_id if predictions else "",
        "time": datetime.now(UTC).isoformat(),
        "model_version": predictions[0].model_version if predictions else "",
        "entity_ids": [p.entity_id for p in predictions],
        "scores": [p.probability for p in predictions],
        "decisions": [p.decision for p in predictions],
        "latency_ms": latency_ms,
        "event_times": event_times if event_times is not None else [None] * len(predictions),
        "segments": segments,
        "feature_names": list(features.columns),
        "feature_rows": list(features.itertuples(index=False, name=None)),
    }
    return write_now(Path(folder), spec.name, slot, [batch])


def answer(scored: Scored, model_version: str, slot: str, threshold: float, entity_id: str) -> dict[str, Any]:
    """The service's JSON answer for a scored request."""
    ids = scored.features.column(entity_id)
    return {
        "request_id": scored.request_id,
        "model_version": model_version,
        "slot": slot,
        "threshold": threshold,
        "predictions": [
            {"id": str(i), "probability": p, "decision": d}
            for i, p, d in zip(ids, scored.probabilities, scored.decisions, strict=True)
        ],
    }


def answer_arrow(scored: Scored, model_version: str, slot: str, threshold: float, entity_id: str) -> bytes:
    """The Arrow endpoint's answer: an IPC stream of id, probability and decision, in request
    order, with the request id, model version, slot and threshold in the schema's metadata."""
    import pyarrow as pa

    table = pa.table(
        {
            "id": scored.features.arrow_column(entity_id).cast(pa.string()),
            "probability": pa.array(scored.probabilities, type=pa.float64()),
            "decision": pa.array(scored.decisions, type=pa.bool_()),
        }
    ).replace_schema_metadata(
        {
            "request_id": scored.request_id,
            "model_version": model_version,
            "slot": slot,
            "threshold": repr(threshold),
        }
    )
    return arrow_request.to_stream(table)


def new_request_id() -> str:
    return uuid.uuid4().hex
