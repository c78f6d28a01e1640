"""Classification metrics for a binary label: AUC, F1 at a threshold, log-loss, Brier, ECE."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Metrics:
    rows: int
    positive_rate: float
    auc: float | None  # None when only one class is present
    f1: float
    log_loss: float
    brier: float
    ece: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-width probability bins."""
    import numpy as np

    if len(y) == 0:
        return 0.0
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def calibration_curve(
    y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[tuple[float, float, int]]:
    """(mean prediction, observed rate, rows) for each non-empty bin."""
    import numpy as np

    index = np.minimum((p * bins).astype(int), bins - 1)
    return [
        (float(p[index == b].mean()), float(y[index == b].mean()), int((index == b).sum()))
        for b in range(bins)
        if (index == b).any()
    ]


def compute(y: np.ndarray, p: np.ndarray, threshold: float) -> Metrics:
    import numpy as np
    from sklearn.metrics import brier_score_loss, f1_score, log_loss, roc_auc_score

    if len(y) == 0:
        raise ValueError("no rows to evaluate")
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    two_classes = len(np.unique(y)) == 2
    return Metrics(
        rows=len(y),
        positive_rate=float(y.mean()),
        auc=float(roc_auc_score(y, p)) if two_classes else None,
        f1=float(f1_score(y, p >= threshold, zero_division=0)),
        log_loss=float(log_loss(y, clipped, labels=[0, 1])),
        brier=float(brier_score_loss(y, p)),
        ece=expected_calibration_error(y, p),
    )


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximizes F1 (chosen on the validation split)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    if len(thresholds) == 0:
        return 0.5
    return float(thresholds[int(np.argmax(f1[:-1]))])


def segment_masks(frame: pd.DataFrame, segments: list[str]) -> dict[str, np.ndarray]:
    """A boolean row mask for each value of each segment column, named `column=value`."""
    masks = {}
    for column in segments:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            masks[f"{column}={value}"] = values == value
    return masks


def by_partition(frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Metrics]:
    """Metrics for each partition of the rows (their `PARTITION_COLUMN`)."""
    from ct_assets.lib.core.warehouse import PARTITION_COLUMN

    keys = frame[PARTITION_COLUMN].astype(str).to_numpy()
    return {key: compute(y[keys == key], p[keys == key], threshold) for key in sorted(set(keys.tolist()))}


def by_segment(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, segments: list[str], threshold: float, min_rows: int
) -> dict[str, Metrics]:
    """Metrics for each value of each segment column with at least `min_rows` rows."""
    return {
        name: compute(y[mask], p[mask], threshold)
        for name, mask in segment_masks(frame, segments).items()
        if mask.sum() >= min_rows
    }
