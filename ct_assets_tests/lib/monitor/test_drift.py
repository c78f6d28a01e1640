"""Drift scoring on real whylogs profiles: calibrated thresholds, and the awkward partitions
(new categories, all-null and constant columns, a handful of rows) computed or skipped with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ct_assets.lib.data import profiles
from ct_assets.lib.monitor import drift

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
