"""Monitoring measures on real flights features: drift leaves out features with a monitoring role,
a partition measured against its own reference window does not drift while a shifted feature does,
tiny partitions are skipped with their reason, and performance rows carry one overall row and one
per segment value."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.model_training import labels
from ct_assets.lib.monitor import measures
from ct_assets_tests.lib.conftest import DAYS

WINDOW, NEXT = DAYS[:3], DAYS[3]


def _reference(spec: PipelineSpec, frames: dict[str, pd.DataFrame]) -> measures.Reference:
    views = [measures.partition_profile(frames[day], spec) for day in WINDOW]
    return measures.reference(views, spec, label_rate=0.2)


def test_drift_leaves_out_features_with_a_role(small_spec: PipelineSpec) -> None:
    every = measures.feature_kinds(small_spec)
    measured = measures.drift_kinds(small_spec)
    assert {"sched_weekday", "sched_month"} <= set(every)
    assert set(every) - set(measured) == small_spec.unmonitored_features
    assert "sched_weekday" not in measured and measured["distance"] == "numeric"


def test_a_shifted_feature_drifts_and_an_unchanged_partition_does_not(
    small_spec: PipelineSpec, five_days: dict[str, pd.DataFrame]
) -> None:
    ref = _reference(small_spec, five_days)
    assert ref.label_rate == 0.2 and set(ref.thresholds) == set(measures.drift_kinds(small_spec))
    importance = {feature: 1.0 for feature in measures.drift_kinds(small_spec)}
    frame = five_days[NEXT]
    same = measures.score_drift(
        ref, measures.partition_profile(frame, small_spec), len(frame), small_spec, importance
    )
    shifted_frame = frame.assign(distance=frame["distance"] * 3 + 2000)
    shifted = measures.score_drift(
        ref, measures.partition_profile(shifted_frame, small_spec), len(frame), small_spec, importance
    )
    assert "distance" not in same.drifted
    assert "distance" in shifted.drifted and shifted.share is not None and shifted.share > (same.share or 0)
    assert "distance" in shifted.describe()


def test_a_tiny_partition_is_skipped_with_its_reason(
    small_spec: PipelineSpec, five_days: dict[str, pd.DataFrame]
) -> None:
    ref = _reference(small_spec, five_days)
    tiny = five_days[NEXT].head(small_spec.monitoring.min_rows - 1)
    result = measures.score_drift(
        ref, measures.partition_profile(tiny, small_spec), len(tiny), small_spec, {}
    )
    assert result.share is None and result.drifted == {}
    assert result.skipped and f"only {len(tiny)} rows" in result.skipped
    assert result.describe().startswith("drift skipped:")


def test_performance_rows_hold_the_overall_and_each_segment_value(
    small_spec: PipelineSpec, five_days: dict[str, pd.DataFrame]
) -> None:
    frame = five_days[NEXT]
    y = labels(frame, small_spec)
    rng = np.random.default_rng(0)
    scores = np.clip(0.6 * y + rng.uniform(0, 0.4, len(y)), 0, 1)  # informative, not perfect
    evaluation = measures.performance(frame, scores, small_spec, threshold=0.5)
    assert evaluation.overall.auc > 0.9
    rows = measures.evaluation_rows(NEXT, "v0003", "live", evaluation)
    assert rows[0]["segment"] == "overall" and rows[0]["rows"] == len(frame)
    assert {r["segment"] for r in rows[1:]} == set(evaluation.segments)
    assert all(r["partition"] == NEXT and r["model_version"] == "v0003" for r in rows)
