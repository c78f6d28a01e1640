"""Is a candidate really worse than the champion, or does it only look worse on a small holdout?

Both models score the same holdout rows, so their difference on a figure (AUC, log-loss,
calibration error) can be judged pairwise: the rows are resampled with replacement (a paired
bootstrap, RESAMPLES times, fixed seed, so a verdict is repeatable) and each resample's figure is
computed for both models. The share of resamples in which the candidate is the worse of the two is
the evidence: the gate counts a regression beyond the allowance against a candidate only when
that share reaches CONFIDENCE. The bootstrap measures the row-sampling noise of this holdout:
on a few thousand rows it moves AUC by a hundredth or more, so a candidate trained on newer data
that looks that much worse is not shown worse, while one worse on nearly every resample is
refused. The burden of proof is on the regression: on a small segment (near the spec's
`min_segment_rows`) only a large one is shown. Rows are resampled, not partitions: a holdout of
three partitions has too few to resample, so a difference between days is not part of the noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ct_assets.lib.model.metrics import expected_calibration_error

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RESAMPLES = 400
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
    (named `column=value`, as `metrics.by_segment` names them)."""
    masks = {}
    for column in segments:
        values = frame[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            masks[f"{column}={value}"] = values == value
    return PairedScores(labels, candidate, champion, masks)


def rank_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """AUC by the rank-sum (Mann-Whitney) formula, ties sharing their average rank: equal to
    scikit-learn's `roc_auc_score` and cheap enough to repeat per resample. None with one class."""
    from scipy.stats import rankdata

    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def figure(name: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """AUC (None with one class), log-loss or calibration error of scores `p` on labels `y`."""
    import numpy as np

    if name == "auc":
        return rank_auc(y, p)
    if name == "log_loss":
        q = np.clip(p, 1e-7, 1 - 1e-7)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    if name == "ece":
        return expected_calibration_error(y, p)
    raise ValueError(f"no paired figure {name!r}: one of {sorted(HIGHER_IS_BETTER)}")


def worse_share(paired: PairedScores, name: str) -> float:
    """The share of paired resamples of the rows in which the candidate is worse than the champion
    on `name` (resamples where the figure is undefined, one class only, are left out)."""
    import numpy as np

    rows = len(paired.labels)
    if rows == 0:
        return 0.0
    generator = np.random.default_rng(SEED)
    worse = counted = 0
    for _ in range(RESAMPLES):
        index = generator.integers(0, rows, rows)
        y = paired.labels[index]
        mine, theirs = figure(name, y, paired.candidate[index]), figure(name, y, paired.champion[index])
        if mine is None or theirs is None:
            continue
        counted += 1
        worse += mine < theirs if HIGHER_IS_BETTER[name] else mine > theirs
    return worse / counted if counted else 0.0
