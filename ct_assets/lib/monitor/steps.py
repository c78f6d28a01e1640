"""The monitoring layer's steps with their I/O: profiles to the profile store, drift and live
performance to warehouse tables, and the signals the sensors read back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import (
    PARTITION_COLUMN,
    key_literal,
    partition_view_sql,
    table_exists,
    table_name,
    transaction,
)
from ct_assets.lib.data import profiles
from ct_assets.lib.data.profiles import ProfileFiles
from ct_assets.lib.model import model_training
from ct_assets.lib.model.gate import Evaluation
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor import measures as monitoring
from ct_assets.lib.monitor.drift import column_drift
from ct_assets.lib.monitor.retrain_policy import PartitionSignal
from ct_assets.lib.monitor.store import DRIFT_COLUMNS, write_partition
from ct_assets.lib.serving.prediction_log_partition import read_partition

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    from whylogs.core import DatasetProfileView

FEATURES, PREDICTIONS, REFERENCE = "features", "predictions", "reference"
REFERENCE_PREDICTIONS = "reference_predictions"


def holdout_prediction_profile(record: ModelVersion, registry: Registry) -> DatasetProfileView:
    """The profile of the model's scores on its own holdout: the reference for its predictions. A
    refit trained on its holdout, so its reference is the scores of the candidate it refits there,
    which had not seen those rows."""
    import pandas as pd

    if record.refit_of:
        record = registry.get(record.refit_of)

    frame = pd.read_parquet(record.dataset_path)
    holdout = frame[frame["_split"] == "holdout"]
    model = load_model(registry.models, record.model_sha256)
    scores = model_training.score(model, holdout, record.layout)
    return profiles.profile(pd.DataFrame({"score": scores}))


def prediction_shift(store: ProfileFiles, version: str, key: str) -> float | None:
    """Hellinger distance of the partition's score distribution from the model's holdout scores."""
    if not (store.exists(PREDICTIONS, key) and store.exists(REFERENCE_PREDICTIONS, version)):
        return None
    result = column_drift(
        store.read(REFERENCE_PREDICTIONS, version),
        store.read(PREDICTIONS, key),
        "score",
        "numeric",
        min_rows=1,
    )
    return result.hellinger


def features_frame(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str) -> pd.DataFrame:
    return con.execute(partition_view_sql(spec.name, "features", [key])).df()


def profile_step(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, store: ProfileFiles) -> int:
    """Profile the partition's features into the store; returns its rows."""
    frame = features_frame(con, spec, key)
    store.write(FEATURES, key, monitoring.partition_profile(frame, spec))
    return len(frame)


def _window_view(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, store: ProfileFiles
) -> DatasetProfileView:
    if not store.exists(FEATURES, key):
        profile_step(con, spec, key, store)
    return store.read(FEATURES, key)


def champion_reference(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, registry: Registry, store: ProfileFiles
) -> tuple[ModelVersion, monitoring.Reference] | None:
    """The champion and its reference (training-window profile and thresholds), built once."""
    record = registry.champion()
    if record is None:
        return None
    version = record.version
    sidecar = store.path(REFERENCE, version).with_suffix(".json")
    if store.exists(REFERENCE, version) and sidecar.exists():
        saved = json.loads(sidecar.read_text())
        return record, monitoring.Reference(
            store.read(REFERENCE, version), saved["thresholds"], saved["label_rate"]
        )
    keys = [k for split in ("train", "validation", "holdout") for k in record.partitions[split]]
    views = [_window_view(con, spec, key, store) for key in keys]
    rate = record.window_label_rate()
    ref = monitoring.reference(views, spec, rate)
    store.write(REFERENCE, version, ref.view)
    store.write(REFERENCE_PREDICTIONS, version, holdout_prediction_profile(record, registry))
    sidecar.write_text(
        json.dumps({"thresholds": ref.thresholds, "label_rate": ref.label_rate, "partitions": keys}, indent=2)
    )
    return record, ref


@dataclass(frozen=True)
class LiveReport:
    model_version: str
    source: str
    evaluation: Evaluation
    prediction_mean: float


def ingest_predictions(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, folder: Path) -> int:
    """Replace the partition of `<pipeline>.predictions` with the logged predictions for its events."""
    frame = read_partition(folder, spec, key)
    with transaction(con):
        return write_partition(con, spec.name, "predictions", key, frame)


def _logged_scores(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, frame: pd.DataFrame
) -> tuple[pd.DataFrame, str] | None:
    """The partition's rows that serving scored (latest prediction per entity), with the version."""
    if not table_exists(con, spec.name, "predictions"):
        return None
    logged = con.execute(partition_view_sql(spec.name, "predictions", [key])).df()
    if logged.empty:
        return None
    latest = logged.sort_values("time").groupby("entity_id").tail(1)
    joined = frame.assign(_entity=frame[spec.entity_id].astype(str)).merge(
        latest[["entity_id", "score", "model_version"]], left_on="_entity", right_on="entity_id", how="inner"
    )
    if joined.empty:
        return None
    return joined, str(joined["model_version"].mode().iloc[0])


def live_performance_step(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, registry: Registry, store: ProfileFiles
) -> LiveReport | None:
    """The champion's performance on the partition. Until serving logs exist, the champion scores the
    partition's features itself (the same model, the same features)."""
    import pandas as pd

    record = registry.champion()
    if record is None:
        return None
    frame = features_frame(con, spec, key)
    if frame.empty:
        return None
    served = _logged_scores(con, spec, key, frame)
    if served is not None:
        frame, version = served
        record = registry.get(version)
        scores = frame["score"].to_numpy()
        source = f"serving prediction log ({len(frame)} of the partition's rows scored)"
    else:
        model = load_model(registry.models, record.model_sha256)
        scores = model_training.score(model, frame, record.layout)
        source = "champion re-scoring (no serving log for this partition)"
    evaluation = monitoring.performance(frame, scores, spec, float(record.threshold))
    rows = monitoring.evaluation_rows(key, record.version, source, evaluation)
    store.write(PREDICTIONS, key, profiles.profile(pd.DataFrame({"score": scores})))
    with transaction(con):
        write_partition(con, spec.name, "live_performance", key, pd.DataFrame(rows))
    return LiveReport(record.version, source, evaluation, float(scores.mean()))


@dataclass(frozen=True)
class DriftReport:
    champion_version: str
    result: monitoring.DriftResult
    label_rate: float | None
    reference_label_rate: float | None
    prediction_hellinger: float | None


def drift_step(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, registry: Registry, store: ProfileFiles
) -> DriftReport | None:
    """The partition's drift against the champion's reference, written to the drift tables."""
    import pandas as pd

    found = champion_reference(con, spec, registry, store)
    if found is None:
        return None
    record, ref = found
    view = _window_view(con, spec, key, store)
    frame = features_frame(con, spec, key)
    result = monitoring.score_drift(ref, view, len(frame), spec, record.feature_importance)
    label_rate = float(frame[spec.label.column].astype(float).mean()) if len(frame) else None
    shift = prediction_shift(store, record.version, key)
    columns = pd.DataFrame(
        [
            c.as_dict() | {"threshold": ref.thresholds.get(c.column), "new_values": json.dumps(c.new_values)}
            for c in result.columns.values()
        ],
        columns=list(DRIFT_COLUMNS),
    )
    summary = pd.DataFrame(
        [
            {
                "champion_version": record.version,
                "rows": result.rows,
                "drift_share": result.share,
                "drifted": json.dumps(result.drifted),
                "skipped": result.skipped,
                "label_rate": label_rate,
                "reference_label_rate": ref.label_rate,
                "prediction_hellinger": shift,
                "description": result.describe(),
            }
        ]
    )
    with transaction(con):
        # a partition that was skipped keeps no per-column rows from an earlier run
        write_partition(con, spec.name, "drift_columns", key, columns)
        write_partition(con, spec.name, "drift_summary", key, summary)
    return DriftReport(record.version, result, label_rate, ref.label_rate, shift)


def recent_signals(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, count: int, champion_version: str | None
) -> list[PartitionSignal]:
    """Drift share, live AUC, labelled rows, label rate and mean logged score of the latest `count`
    partitions scored against this champion."""
    if champion_version is None or not table_exists(con, spec.name, "drift_summary"):
        return []
    version = key_literal(champion_version)
    live = (
        f"(SELECT {PARTITION_COLUMN}, auc, rows, positive_rate "
        f"FROM {table_name(spec.name, 'live_performance')} "
        f"WHERE segment = 'overall' AND model_version = {version})"
        if table_exists(con, spec.name, "live_performance")
        else f"(SELECT NULL::VARCHAR AS {PARTITION_COLUMN}, NULL::DOUBLE AS auc, NULL::BIGINT AS rows, "
        "NULL::DOUBLE AS positive_rate)"
    )
    scores = (
        f"(SELECT {PARTITION_COLUMN}, avg(score) AS mean_score FROM {table_name(spec.name, 'predictions')} "
        f"WHERE model_version = {version} GROUP BY 1)"
        if table_exists(con, spec.name, "predictions")
        else f"(SELECT NULL::VARCHAR AS {PARTITION_COLUMN}, NULL::DOUBLE AS mean_score)"
    )
    rows = con.execute(
        f"SELECT d.{PARTITION_COLUMN}, d.drift_share, d.drifted, l.auc, l.rows, l.positive_rate, "
        "s.mean_score "
        f"FROM {table_name(spec.name, 'drift_summary')} d LEFT JOIN {live} l USING ({PARTITION_COLUMN}) "
        f"LEFT JOIN {scores} s USING ({PARTITION_COLUMN}) "
        f"WHERE d.champion_version = {version} ORDER BY 1 DESC LIMIT {int(count)}"
    ).fetchall()
    return [
        PartitionSignal(k, share, list(json.loads(drifted or "{}")), auc, n, rate, score)
        for k, share, drifted, auc, n, rate, score in reversed(rows)
    ]


def partitions_since(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partition: str) -> int:
    """How many monitored partitions came after `partition` (for cooldowns)."""
    if not table_exists(con, spec.name, "drift_summary"):
        return 0
    return int(
        con.execute(
            f"SELECT count(DISTINCT {PARTITION_COLUMN}) FROM {table_name(spec.name, 'drift_summary')} "
            f"WHERE {PARTITION_COLUMN} > {key_literal(partition)}"
        ).fetchall()[0][0]
    )


def feature_partition_rows(con: duckdb.DuckDBPyConnection, spec: PipelineSpec) -> list[tuple[str, int]]:
    """(partition, rows) of the feature table, oldest first."""
    if not table_exists(con, spec.name, "features"):
        return []
    table = table_name(spec.name, "features")
    counts = con.execute(f"SELECT {PARTITION_COLUMN}, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall()
    return [(str(key), int(rows)) for key, rows in counts]
