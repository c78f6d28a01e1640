"""Is a candidate really worse than the champion, or does it only look worse on a small holdout?

Both models score the same holdout rows, so their difference on a figure (AUC, log-loss,
calibration error) can be judged pairwise: the rows are resampled with replacement (a paired
bootstrap, RESAMPLES times, fixed seed, so a verdict is repeatable) and each resample's figure is
computed for both models. The share of resamples in which the candidate is the worse of the two is
the evidence: the gate counts a regression beyond the allowance against a candidate only when
that share is high enough for all the figures it compares to hold CONFIDENCE together (Holm's
step-down, `gate._shown`). The bootstrap measures the row-sampling noise of this holdout:
on a few thousand rows it moves AUC by a hundredth or more, so a candidate trained on newer data
that looks that much worse is not shown worse, while one worse on nearly every resample is
refused. The burden of proof is on the regression: on a small segment (near the spec's
`min_segment_rows`) only a large one is shown. Rows are resampled, not partitions: a holdout of
three partitions has too few to resample, so a difference between days is not part of the noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ct_assets.lib.model.metrics import CALIBRATION_BINS, segment_masks

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RESAMPLES = 400
CHUNK = 50  # resamples computed together
CONFIDENCE = 0.95
SEED = 0
HIGHER_IS_BETTER = {"auc": True, "log_loss": False, "ece": False}


@dataclass(frozen=True)
class PairedScores:
    """Both models' scores on the same holdout rows, their labels, and each segment's rows."""

    labels: np.ndarray
    candidate: np.ndarray
    champion: np.ndarray
    segments: dict[str, np.ndarray] = field(default_factory=dict)  # segment -> boolean row mask

    def segment(self, name: str) -> PairedScores | None:
        mask = self.segments.get(name)
        if mask is None:
            return None
        return PairedScores(self.labels[mask], self.candidate[mask], self.champion[mask])


def paired_scores(
    frame: pd.DataFrame, labels: np.ndarray, candidate: np.ndarray, champion: np.ndarray, segments: list[str]
) -> PairedScores:
    """The paired scores of one holdout, with a row mask for each value of each segment column
    (`metrics.segment_masks`, named as `metrics.by_segment` names its figures)."""
    return PairedScores(labels, candidate, champion, segment_masks(frame, segments))


def _resample_weights(rows: int, generator: np.random.Generator) -> Iterator[np.ndarray]:
    """RESAMPLES resamples of `rows` rows with replacement, CHUNK at a time, each as the number of
    times every row was drawn (a matrix of chunk by rows: memory stays CHUNK times the rows)."""
    import numpy as np

    for start in range(0, RESAMPLES, CHUNK):
        size = min(CHUNK, RESAMPLES - start)
        drawn = generator.integers(0, rows, (size, rows)) + np.arange(size)[:, None] * rows
        yield np.bincount(drawn.ravel(), minlength=size * rows).reshape(size, rows).astype(float)


def _per_resample(weights: np.ndarray, groups: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """For each resample (a row of `weights`), the weighted sum of `values` in each of `count` groups."""
    import numpy as np

    size = weights.shape[0]
    flat = (groups[None, :] + np.arange(size)[:, None] * count).ravel()
    summed = np.bincount(flat, weights=(weights * values[None, :]).ravel(), minlength=size * count)
    return summed.reshape(size, count)


def _auc(weights: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUC of each resample (NaN with one class): every positive's weight times the weight of the
    negatives scored below it, ties counting half, as scikit-learn's `roc_auc_score` counts them."""
    import numpy as np

    levels, level = np.unique(p, return_inverse=True)
    positives = _per_resample(weights, level, (y == 1).astype(float), len(levels))
    negatives = _per_resample(weights, level, (y != 1).astype(float), len(levels))
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (positives * (below + 0.5 * negatives)).sum(axis=1) / pairs, np.nan)


def _log_loss(weights: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    import numpy as np

    q = np.clip(p, 1e-7, 1 - 1e-7)
    losses = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return weights @ losses / weights.sum(axis=1)


def _ece(weights: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Calibration error of each resample: per probability bin, |labels' sum - predictions' sum|,
    summed and divided by the rows (`metrics.expected_calibration_error`'s figure)."""
    import numpy as np

    bins = np.minimum((p * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    labels = _per_resample(weights, bins, y.astype(float), CALIBRATION_BINS)
    predicted = _per_resample(weights, bins, p.astype(float), CALIBRATION_BINS)
    return np.abs(labels - predicted).sum(axis=1) / weights.sum(axis=1)


FIGURES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "auc": _auc,
    "log_loss": _log_loss,
    "ece": _ece,
}


def figure(name: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """AUC (None with one class), log-loss or calibration error of scores `p` on labels `y`, by the
    code the resamples use."""
    import numpy as np

    if name not in FIGURES:
        raise ValueError(f"no paired figure {name!r}: one of {sorted(FIGURES)}")
    value = float(FIGURES[name](np.ones((1, len(y))), y, p)[0])
    return None if np.isnan(value) else value


def worse_share(paired: PairedScores, name: str) -> float:
    """The share of paired resamples of the rows in which the candidate is worse than the champion
    on `name` (resamples where the figure is undefined, one class only, are left out)."""
    import numpy as np

    rows = len(paired.labels)
    if rows == 0:
        return 0.0
    compute, higher_is_better = FIGURES[name], HIGHER_IS_BETTER[name]
    worse = counted = 0
    for weights in _resample_weights(rows, np.random.default_rng(SEED)):
        mine = compute(weights, paired.labels, paired.candidate)
        theirs = compute(weights, paired.labels, paired.champion)
        defined = ~(np.isnan(mine) | np.isnan(theirs))
        counted += int(defined.sum())
        worse += int(((mine < theirs) if higher_is_better else (mine > theirs))[defined].sum())
    return worse / counted if counted else 0.0
