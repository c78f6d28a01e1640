"""The prediction log's rows and `requests_table`, which turns scored requests into them.

One row per prediction: request id, time, pipeline, model version, slot and latency of its request,
then the entity id, score, decision and event time, the segment values as `segment.<name>` and the
input features as `feature.<name>`. The log is Arrow (IPC stream files, `SUFFIX`): the writer spends
little CPU and few bytes per request, and a partition is ingested by vectorized filters.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIX = ".arrows"  # the Arrow IPC stream format's registered extension
SEGMENT_PREFIX = "segment."
FEATURE_PREFIX = "feature."

COLUMNS = [
    "request_id",
    "time",
    "model_version",
    "slot",
    "entity_id",
    "score",
    "decision",
    "event_time",
    "latency_ms",
]
REQUEST_FIELDS = ("request_id", "time", "pipeline", "model_version", "slot", "latency_ms")
PREDICTION_FIELDS = ("entity_id", "score", "decision", "event_time")


def timestamp_type() -> pa.DataType:
    """The Arrow type of the log's request and event times."""
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


def _array(values: Any, kind: pa.DataType | None = None) -> pa.Array:
    """One column as an Arrow array of `kind` (if given): from an Arrow array (the Arrow endpoint
    hands its columns over unconverted), a numpy array (masked entries become nulls) or a list."""
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        if np.ma.isMaskedArray(values):
            values = pa.array(np.ma.getdata(values), mask=np.ma.getmaskarray(values))
        else:
            values = pa.array(values, type=kind if isinstance(values, np.ndarray) else None)
    if kind is not None and values.type != kind:
        values = values.cast(kind)
    return values


def _joined(parts: list[Any], counts: list[int], kind: pa.DataType | None = None) -> pa.Array:
    """One per-prediction field of several requests as one array (lists are joined before Arrow
    sees them: an array per one-row request would cost more than its value)."""
    import pyarrow as pa

    if any(len(part) != count for part, count in zip(parts, counts, strict=True)):
        raise ValueError("prediction log: a request's fields have different lengths")
    if all(isinstance(part, list) for part in parts):
        return _array(list(itertools.chain.from_iterable(parts)) if len(parts) > 1 else parts[0], kind)
    arrays = [_array(part, kind) for part in parts]
    if kind is None:  # inferred types: a part that is all nulls takes the others' type
        typed = next((a.type for a in arrays if a.type != pa.null()), pa.null())
        arrays = [a if a.type == typed else a.cast(typed) for a in arrays]
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


def _feature_columns(rows: Any, names: list[str]) -> list[Any]:
    """The feature columns of a serving.FeatureRows (its Arrow table, or its lists), or of tuples."""
    if getattr(rows, "table", None) is not None:
        return [rows.table.column(name) for name in names]
    if hasattr(rows, "columns"):
        return [rows.column(name) for name in names]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in names]


def requests_table(batches: list[dict[str, Any]], pipeline: str, slot: str) -> pa.Table:
    """Scored requests as log rows, one per prediction, request after request in each request's
    order, each request's own fields repeated on its rows (see the module doc for the columns)."""
    import numpy as np
    import pyarrow as pa

    names, segments = list(batches[0]["feature_names"]), list(batches[0]["segments"])
    if any(list(b["feature_names"]) != names or list(b["segments"]) != segments for b in batches):
        raise ValueError("prediction log: requests written together must have the same features and segments")
    counts = [len(b["scores"]) for b in batches]
    total = sum(counts)
    owner = pa.array(np.repeat(np.arange(len(batches)), counts))

    def per_request(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array(values, kind).take(owner)

    def per_prediction(key: str, kind: pa.DataType | None = None) -> pa.Array:
        return _joined([b[key] for b in batches], counts, kind)

    features = [_feature_columns(b["feature_rows"], names) for b in batches]
    columns = {
        "request_id": per_request([b["request_id"] for b in batches], pa.string()),
        "time": per_request([datetime.fromisoformat(b["time"]) for b in batches], timestamp_type()),
        "pipeline": pa.repeat(pa.scalar(pipeline, pa.string()), total),
        "model_version": per_request([b["model_version"] for b in batches], pa.string()),
        "slot": pa.repeat(pa.scalar(slot, pa.string()), total),
        "latency_ms": per_request([b["latency_ms"] for b in batches], pa.float64()),
        "entity_id": per_prediction("entity_ids", pa.string()),
        "score": per_prediction("scores", pa.float64()),
        "decision": per_prediction("decisions", pa.bool_()),
        "event_time": per_prediction("event_times", timestamp_type()),
        **{SEGMENT_PREFIX + n: _joined([b["segments"][n] for b in batches], counts) for n in segments},
        **{FEATURE_PREFIX + n: _joined([f[i] for f in features], counts) for i, n in enumerate(names)},
    }
    return pa.table(columns)
