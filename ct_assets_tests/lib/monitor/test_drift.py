"""Drift scoring on real whylogs profiles: calibrated thresholds, and the awkward partitions
(new categories, all-null and constant columns, a handful of rows) computed or skipped with a reason;
a feature with a monitoring role is left out while the others still drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.data import profiles
from ct_assets.lib.monitor import drift, measures
from ct_assets_tests.defs.data import loans_pipeline

KINDS = {"x": "numeric", "c": "categorical", "k": "numeric"}


def _view(
    rows: int,
    seed: int,
    shift: float = 0.0,
    categories: tuple[str, ...] = ("a", "b", "c"),
    null_x: bool = False,
):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": np.full(rows, np.nan) if null_x else rng.normal(shift, 1.0, rows),
            "c": rng.choice(list(categories), rows),
            "k": np.full(rows, 7.0),  # constant column
        }
    )
    return profiles.profile(profiles.prepare(frame, ["c"], ["x", "k"]))


def _reference():
    window = [_view(2000, seed) for seed in range(7)]
    merged = profiles.merge(window)
    thresholds = drift.calibrate_thresholds(merged, window, KINDS, k=3.0, floor=0.05, min_rows=100)
    return merged, thresholds


def test_an_ordinary_partition_stays_under_calibrated_thresholds() -> None:
    merged, thresholds = _reference()
    result = drift.partition_drift(merged, _view(2000, 99), KINDS, min_rows=100)
    assert all(r.hellinger is not None and r.hellinger <= thresholds[c] for c, r in result.items())
    assert result["x"].statistic is not None and result["c"].pvalue is not None  # whylogs KS / chi-square


def test_a_shifted_numeric_feature_and_a_new_category_drift() -> None:
    merged, thresholds = _reference()
    result = drift.partition_drift(
        merged, _view(2000, 5, shift=1.5, categories=("a", "b", "zzz")), KINDS, 100
    )
    assert result["x"].hellinger > thresholds["x"]
    assert result["c"].hellinger > thresholds["c"] and result["c"].new_values == ["zzz"]
    assert result["k"].hellinger == 0.0  # a constant column that stays constant: no drift, no crash


def test_an_all_null_column_and_a_tiny_partition_are_skipped_with_reasons() -> None:
    merged, _ = _reference()
    nulls = drift.partition_drift(merged, _view(2000, 3, null_x=True), KINDS, min_rows=100)
    assert nulls["x"].skipped == "every value is null in the partition" and nulls["x"].null_rate == 1.0
    tiny = drift.partition_drift(merged, _view(12, 4), KINDS, min_rows=100)
    assert all(r.skipped == "only 12 rows (< 100): too few to judge" for r in tiny.values())


def _loans(tmp_path: Path):
    spec_path = loans_pipeline.write_pipeline(tmp_path / "pipelines")
    spec_path.write_text(
        spec_path.read_text().replace(
            "debt_ratio: {kind: numeric}", "debt_ratio: {kind: numeric, role: calendar}"
        )
    )
    return load_spec(spec_path)


def _features(rows: int, seed: int, amount_shift: float = 0.0, ratio_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(10000 + amount_shift, 2000, rows),
            "debt_ratio": rng.uniform(0, 1, rows) + ratio_shift,
            "grade": rng.choice(list("ABCDE"), rows),
            "region": rng.choice(["north", "south", "east"], rows),
            "region_unemployment": rng.choice([4.1, 6.3, 5.0], rows),
        }
    )


def test_drift_ignores_a_column_with_a_monitoring_role(tmp_path: Path) -> None:
    spec = _loans(tmp_path)
    assert spec.unmonitored_features == {"debt_ratio"}
    ref = measures.reference([measures.partition_profile(_features(1000, s), spec) for s in range(7)], spec)
    assert "debt_ratio" not in ref.thresholds
    importance = {"amount": 0.4, "debt_ratio": 0.4, "grade": 0.2}

    walked = _features(1000, 50, ratio_shift=5.0)  # the marked column leaves its range entirely
    result = measures.score_drift(ref, measures.partition_profile(walked, spec), 1000, spec, importance)
    assert result.drifted == {} and result.share == 0.0 and "debt_ratio" not in result.columns

    shifted = _features(1000, 51, amount_shift=8000.0, ratio_shift=5.0)  # an unmarked column moves too
    result = measures.score_drift(ref, measures.partition_profile(shifted, spec), 1000, spec, importance)
    assert list(result.drifted) == ["amount"] and result.share == 0.4
