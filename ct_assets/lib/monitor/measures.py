"""Monitoring of one partition: its profile, its drift against the champion's reference window,
and the serving model's performance on it. Pure functions over frames and profiles, shared by
the Dagster assets, the sensors and the backtest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import profiles
from ct_assets.lib.model import metrics
from ct_assets.lib.model.gate import Evaluation
from ct_assets.lib.model.model_training import labels
from ct_assets.lib.monitor import drift
from ct_assets.lib.monitor.retrain_policy import weighted_share

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from whylogs.core import DatasetProfileView


def feature_kinds(spec: PipelineSpec) -> dict[str, str]:
    """Every feature (not only the model's inputs) with its kind, as profiles see them."""
    return {
        name: column.kind for group in spec.feature_groups.values() for name, column in group.columns.items()
    }


def drift_kinds(spec: PipelineSpec) -> dict[str, str]:
    """The features drift is measured on: every feature but those with a monitoring role."""
    skip = spec.unmonitored_features
    return {name: kind for name, kind in feature_kinds(spec).items() if name not in skip}


def partition_profile(frame: pd.DataFrame, spec: PipelineSpec) -> DatasetProfileView:
    kinds = feature_kinds(spec)
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    return profiles.profile(profiles.prepare(frame, categorical, numeric))


@dataclass(frozen=True)
class Reference:
    """A model's reference: the merged profile of its training window and calibrated thresholds."""

    view: DatasetProfileView
    thresholds: dict[str, float]
    label_rate: float | None = None


def reference(
    window_views: list[DatasetProfileView], spec: PipelineSpec, label_rate: float | None = None
) -> Reference:
    rules = spec.monitoring
    merged = profiles.merge(window_views)
    thresholds = drift.calibrate_thresholds(
        merged, window_views, drift_kinds(spec), rules.threshold_k, rules.threshold_floor, rules.min_rows
    )
    return Reference(merged, {c: min(t, 1.0) for c, t in thresholds.items()}, label_rate)


@dataclass(frozen=True)
class DriftResult:
    rows: int
    share: float | None  # importance share of drifted features; None when the partition was skipped
    drifted: dict[str, float]  # feature -> Hellinger distance, for features over their threshold
    columns: dict[str, drift.ColumnDrift] = field(default_factory=dict)
    skipped: str | None = None

    def describe(self) -> str:
        if self.skipped:
            return f"drift skipped: {self.skipped}"
        if not self.drifted:
            return "no feature drifted beyond its calibrated threshold"
        listed = ", ".join(f"{c} {d:.3f}" for c, d in sorted(self.drifted.items(), key=lambda i: -i[1]))
        return f"drifted ({self.share:.0%} of importance): {listed}"


def score_drift(
    ref: Reference, view: DatasetProfileView, rows: int, spec: PipelineSpec, importance: dict[str, float]
) -> DriftResult:
    """Drift of a partition against a reference; tiny partitions are skipped with a reason."""
    rules = spec.monitoring
    if rows < rules.min_rows:
        return DriftResult(rows, None, {}, skipped=f"only {rows} rows (< {rules.min_rows}): too few to judge")
    columns = drift.partition_drift(ref.view, view, drift_kinds(spec), rules.min_rows)
    drifted = {}
    for column, result in columns.items():
        null_shift = abs(result.null_rate - result.reference_null_rate) > 0.2
        if (
            result.hellinger is not None and result.hellinger > ref.thresholds.get(column, 1.0)
        ) or null_shift:
            drifted[column] = result.hellinger if result.hellinger is not None else 1.0
    return DriftResult(rows, weighted_share(list(drifted), importance), drifted, columns)


def performance(frame: pd.DataFrame, scores: np.ndarray, spec: PipelineSpec, threshold: float) -> Evaluation:
    """The serving model's metrics on a partition, overall and per segment value."""
    y = labels(frame, spec)
    overall = metrics.compute(y, scores, threshold)
    segments = metrics.by_segment(
        frame, y, scores, spec.segments, threshold, min_rows=spec.monitoring.min_rows // 4
    )
    return Evaluation(overall, segments)


def evaluation_rows(
    partition: str, version: str, source: str, evaluation: Evaluation
) -> list[dict[str, Any]]:
    """Rows for the live-performance table: one overall, one per segment value."""

    def row(segment: str, m: metrics.Metrics) -> dict[str, Any]:
        return {
            "partition": partition,
            "model_version": version,
            "source": source,
            "segment": segment,
            **m.as_dict(),
        }

    return [row("overall", evaluation.overall), *(row(s, m) for s, m in evaluation.segments.items())]
