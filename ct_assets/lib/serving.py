"""Serving logic, shared by the BentoML service and its tests: request validation with readable
errors, features computed with the pipeline's own SQL against the online snapshot (the same code
the warehouse path runs), scoring, and the append-only prediction log."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.features import check_group_columns, groups
from ct_assets.lib.ingest import DUCKDB_TYPES
from ct_assets.lib.spec import PipelineSpec
from ct_assets.lib.warehouse import quote

if TYPE_CHECKING:
    import pandas as pd

MAX_BATCH_ROWS = 10_000


class RequestError(ValueError):
    """A request that cannot be scored; the message says which row and field, and why."""


def request_columns(spec: PipelineSpec) -> dict[str, str]:
    """What a caller knows before the event: every column except post-event ones."""
    return {name: column.type for name, column in spec.columns.items() if name not in spec.post_event_columns}


def _python_ok(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("timestamp", "date"):
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    return False


def rows_from_columns(columns: Any) -> list[dict[str, Any]]:
    """Column-oriented JSON ({field: [values...]}) as rows; lists must have equal lengths."""
    if not isinstance(columns, dict) or not columns:
        raise RequestError("columns must be an object mapping each field to a list of values")
    lengths = {name: len(values) for name, values in columns.items() if isinstance(values, list)}
    if len(lengths) != len(columns):
        bad = [name for name in columns if name not in lengths]
        raise RequestError(f"fields {bad} must be lists of values")
    if len(set(lengths.values())) != 1:
        raise RequestError(f"all field lists must have the same length, got {lengths}")
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def validate_request(
    rows: Any, spec: PipelineSpec, max_rows: int = MAX_BATCH_ROWS, engine: FeatureEngine | None = None
) -> pd.DataFrame:
    """Check shape, fields, types and the spec's rules; return the rows typed as the warehouse has them."""
    import pandas as pd

    if not isinstance(rows, list) or not rows:
        raise RequestError("rows must be a non-empty list of objects")
    if len(rows) > max_rows:
        raise RequestError(f"batch of {len(rows)} rows is larger than the limit of {max_rows}")
    expected = request_columns(spec)
    problems = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"row {index}: must be an object, got {type(row).__name__}")
            continue
        missing = [c for c in expected if c not in row]
        unknown = [c for c in row if c not in expected and c not in spec.post_event_columns]
        if missing:
            problems.append(f"row {index}: missing fields {missing}")
        if unknown:
            problems.append(f"row {index}: unknown fields {unknown}")
        for name, kind in expected.items():
            if name in row and not _python_ok(row[name], kind):
                problems.append(f"row {index}: field {name!r} must be {kind}, got {row[name]!r}")
            elif name in row and row[name] is None and not spec.columns[name].nullable:
                problems.append(f"row {index}: field {name!r} is required")
        if len(problems) >= 20:
            break
    if problems:
        raise RequestError("; ".join(problems[:20]))
    frame = pd.DataFrame([{name: row.get(name) for name in expected} for row in rows])
    return _rule_check(frame, spec, engine)


def _rule_check(frame: pd.DataFrame, spec: PipelineSpec, engine: FeatureEngine | None = None) -> pd.DataFrame:
    """The spec's rules (ranges, allowed values, unique ids) through the training path's pandera model."""
    import pandas as pd

    from ct_assets.lib.validation import find_bad_rows

    typed = (engine or FeatureEngine(spec, None)).cast(frame)
    for column in spec.post_event_columns:
        typed[column] = pd.Series([None] * len(typed), dtype="float64")
    typed["_cast_errors"] = None
    far = (pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC"))
    bad = find_bad_rows(typed[[*spec.columns, "_cast_errors"]], spec, far)
    if bad:
        listed = "; ".join(f"row {i}: {reason}" for i, reason in sorted(bad.items())[:20])
        raise RequestError(listed)
    return typed


class FeatureEngine:
    """Features for request rows, for the life of a service process.

    One in-memory DuckDB holds the online snapshot (loaded once, reloaded when a new snapshot is
    published); the pipeline's feature SQL is checked against the spec once, then every request runs
    all groups as one query on its own cursor.
    """

    def __init__(self, spec: PipelineSpec, snapshot: Path | None) -> None:
        import threading

        import duckdb

        self.spec = spec
        self.snapshot = Path(snapshot) if snapshot else None
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._loaded: float | None = None
        self._casts = ", ".join(
            f"TRY_CAST({quote(n)} AS {DUCKDB_TYPES[t]}) AS {quote(n)}"
            for n, t in request_columns(spec).items()
        )
        self.query = ""
        if self.snapshot is not None:
            self.reload_if_new()
            self.query = self._checked_query()

    def reload_if_new(self) -> None:
        """Load the snapshot's tables if it was published since the last load."""
        if self.snapshot is None:
            return
        manifest = self.snapshot / "manifest.json"
        stamp = manifest.stat().st_mtime if manifest.exists() else None
        if stamp is None or stamp == self._loaded:
            return
        with self._lock:
            for table in self.spec.context_tables:
                path = self.snapshot / f"{table}.parquet"
                self.con.execute(
                    f"CREATE OR REPLACE TABLE {quote(table)} AS SELECT * FROM read_parquet('{path}')"
                )
            self._loaded = stamp

    def _checked_query(self) -> str:
        spec = self.spec
        columns = ", ".join(f"NULL::{DUCKDB_TYPES[c.type]} AS {quote(n)}" for n, c in spec.columns.items())
        self.con.execute(f"CREATE TEMP TABLE validated AS SELECT {columns} LIMIT 0")
        entity = quote(spec.entity_id)
        select, joins = [f"v.{entity}"], []
        for index, group in enumerate(g for g in groups(spec) if g.name != "label"):
            check_group_columns(self.con, spec, group)
            select += [f"g{index}.{quote(c)}" for c in group.columns]
            joins.append(f"LEFT JOIN ({spec.sql_text(group.sql_path)}) AS g{index} USING ({entity})")
        self.con.execute("DROP TABLE validated")
        return (
            f"WITH validated AS (SELECT * FROM _request) SELECT {', '.join(select)} "
            f"FROM validated AS v {' '.join(joins)}"
        )

    def cast(self, frame: pd.DataFrame) -> pd.DataFrame:
        cursor = self.con.cursor()
        try:
            cursor.register("_raw_request", frame)
            return cursor.execute(f"SELECT {self._casts} FROM _raw_request").df()
        finally:
            cursor.close()

    def features(self, typed: pd.DataFrame) -> pd.DataFrame:
        cursor = self.con.cursor()
        try:
            cursor.register("_request", typed)
            result = cursor.execute(self.query).df()
        finally:
            cursor.close()
        ids = result[self.spec.entity_id]
        if len(result) != len(typed) or ids.duplicated().any():
            raise RuntimeError(
                f"feature SQL of {self.spec.name} returned {len(result)} rows for {len(typed)}"
            )
        return result


def compute_features(typed: pd.DataFrame, spec: PipelineSpec, snapshot: Path) -> pd.DataFrame:
    """Run the pipeline's feature SQL on the request rows with the online snapshot as context."""
    return FeatureEngine(spec, snapshot).features(typed)


@dataclass(frozen=True)
class Prediction:
    request_id: str
    entity_id: str
    probability: float
    decision: bool
    model_version: str


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
    """Append one JSON line per prediction to today's log file of this process (never the warehouse)."""
    now = datetime.now(UTC)
    path = Path(folder) / spec.name / now.strftime("%Y-%m-%d") / f"{slot}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = features.to_dict(orient="records")
    with path.open("a") as handle:
        for index, prediction in enumerate(predictions):
            handle.write(
                json.dumps(
                    {
                        "request_id": prediction.request_id,
                        "time": now.isoformat(),
                        "pipeline": spec.name,
                        "model_version": prediction.model_version,
                        "slot": slot,
                        "entity_id": prediction.entity_id,
                        "score": prediction.probability,
                        "decision": prediction.decision,
                        "latency_ms": latency_ms,
                        "event_time": str(event_times[index]) if event_times is not None else None,
                        "segments": {name: values[index] for name, values in segments.items()},
                        "features": records[index],
                    },
                    default=str,
                )
                + "\n"
            )
    return path


def new_request_id() -> str:
    return uuid.uuid4().hex
