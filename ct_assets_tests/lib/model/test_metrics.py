"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np

from ct_assets.lib.model.metrics import best_f1_threshold, by_segment, compute, expected_calibration_error


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    p = np.array([0.4] * 5 + [0.4] * 5)
    assert expected_calibration_error(y, p) == 0.0


def test_ece_weights_bins_by_rows() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.55])
    # bin 0: |0 - 0.05| * 2; bin 9: |1 - 0.95|; bin 5: |1 - 0.55|
    assert abs(expected_calibration_error(y, p) - (0.1 + 0.05 + 0.45) / 4) < 1e-12


def test_compute_and_threshold() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    metrics = compute(y, p, threshold=0.3)
    assert metrics.auc == 0.75 and metrics.rows == 4
    assert abs(metrics.f1 - 2 * (2 / 3) * 1 / (2 / 3 + 1)) < 1e-12
    assert best_f1_threshold(y, p) in (0.35, 0.1)


def test_segments_with_one_class_have_no_auc() -> None:
    import pandas as pd

    frame = pd.DataFrame({"origin": ["A", "A", "B", "B"]})
    result = by_segment(frame, np.array([0, 1, 1, 1]), np.array([0.2, 0.7, 0.6, 0.9]), ["origin"], 0.5, 1)
    assert result["origin=A"].auc == 1.0 and result["origin=B"].auc is None
