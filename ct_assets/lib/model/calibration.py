"""Calibrated probabilities: Platt scaling on the model's logit, fitted on the validation split
(the newest labelled partitions the gate does not judge on), so the served probability follows
the current label rate rather than the training window's.

Why Platt and not isotonic: a validation split holds a few thousand rows or fewer; Platt fits two
parameters (a slope and an intercept on the logit) and is stable there, where isotonic regression
fits a step function with as many steps as the data allow and overfits small splits. Platt is
monotone, so it keeps the model's ranking (AUC is unchanged), and it moves the whole curve to a
new label rate through its intercept, which is what a label-rate shift needs.

Why the validation rows may both early-stop and calibrate: early stopping picks one number (the
iteration count) by the validation AUC, a ranking measure that the monotone Platt map does not
change; Platt's two parameters are then fitted by likelihood on the same rows. The selection makes
the validation scores at most slightly optimistic in ranking; splitting validation in two would
halve the rows of both fits and move the calibration rows away from the newest labels. The gate
judges the calibrated model on the holdout alone, which neither fit has seen.

How much of the Platt map is served is checked forward in time inside the validation split, the
way the map is used: fitted on the older validation partitions, it is judged on the newest one
against the uncalibrated model, for each trust `w` in TRUST_GRID, and the `w` with the lowest
log-loss there is kept (ties: the higher). The served logit is `(1 - w) * logit + w * (slope *
logit + intercept)`, with slope and intercept refitted on the whole validation split. On data whose
label rate persists the check keeps the full map; on data where a few partitions' rate is noise (a
stormy day of flights in the validation split) it keeps the model as trained. With one validation
partition there is nothing to check forward and the full map is served.

The calibration lives inside the model artifact: a CatBoost model's raw value is
`scale * sum(trees) + bias`, and its probability is the sigmoid of that raw value, so Platt's
`sigmoid(slope * logit + intercept)` is the model with scale and bias set to
`(slope * scale, slope * bias + intercept)`. Every `predict_proba` (training-side scoring, the
evaluation, the backtest and the serving Scorer) therefore applies the same calibration, and the
artifact's sha256 covers it. The parameters are also recorded in the registry record.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.warehouse import PARTITION_COLUMN
from ct_assets.lib.model.model_training import FeatureLayout, labels, model_inputs, train

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from catboost import CatBoostClassifier

    from ct_assets.lib.core.spec import PipelineSpec

METHOD = "platt"


@dataclass(frozen=True)
class Calibration:
    """The served map on a model's logit (`slope * logit + intercept`, the Platt fit weighed by
    its trust), and the model's scale and bias before it was applied."""

    slope: float
    intercept: float
    base_scale: float
    base_bias: float
    rows: int
    label_rate: float  # of the rows it was fitted on
    mean_before: float  # mean probability on those rows before calibration
    mean_after: float  # and after
    trust: float = 1.0  # w: the share of the Platt map served (slope and intercept include it)
    checked_on: str | None = None  # the newest validation partition the trust was checked on
    method: str = METHOD
    fitted_on: list[str] = field(default_factory=list)  # the partitions of those rows

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of `P(y=1) = sigmoid(slope * logit + intercept)` by maximum likelihood
    (L-BFGS on the convex log-loss, so every step lowers it), with Platt's smoothed targets so that
    a separable split stays finite."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    positives = float(y.sum())
    negatives = float(len(y) - positives)
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    x = logits.astype(float)

    def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        z = weights[0] * x + weights[1]
        value = -float(np.sum(target * log_expit(z) + (1 - target) * log_expit(-z)))
        residual = expit(z) - target
        return value, np.array([float(residual @ x), float(residual.sum())])

    found = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", options={"gtol": 1e-9})
    return float(found.x[0]), float(found.x[1])


TRUST_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _log_loss(y: np.ndarray, logits: np.ndarray) -> float:
    import numpy as np

    p = np.clip(1 / (1 + np.exp(-logits)), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def forward_trust(logits: np.ndarray, y: np.ndarray, partitions: np.ndarray) -> tuple[float, str | None]:
    """The trust in TRUST_GRID whose Platt map, fitted on all but the newest partition, gives the
    lowest log-loss on the newest one; (1.0, None) with fewer than two partitions or one class."""
    import numpy as np

    keys = sorted(set(partitions.tolist()))
    if len(keys) < 2:
        return 1.0, None
    older, newest = partitions != keys[-1], partitions == keys[-1]
    if len(np.unique(y[older])) < 2:
        return 1.0, None
    slope, intercept = fit_platt(logits[older], y[older])
    z = logits[newest]
    losses = {w: _log_loss(y[newest], (1 - w) * z + w * (slope * z + intercept)) for w in TRUST_GRID}
    best = min(losses.values())
    return max(w for w, loss in losses.items() if loss <= best + 1e-12), str(keys[-1])


def raw_logits(model: CatBoostClassifier, frame: pd.DataFrame, layout: FeatureLayout) -> np.ndarray:
    """The model's logit for each row (CatBoost's raw formula value, scale and bias applied)."""
    return model.predict(model_inputs(frame, layout), prediction_type="RawFormulaVal")


def _sigmoid_mean(values: np.ndarray) -> float:
    import numpy as np

    return float(np.mean(1 / (1 + np.exp(-values)))) if len(values) else math.nan


def calibrate(
    model: CatBoostClassifier,
    rows: pd.DataFrame,
    spec: PipelineSpec,
    layout: FeatureLayout,
    fitted_on: list[str] | None = None,
) -> Calibration:
    """Fit Platt scaling on the model's own logits on `rows`, weigh it by its forward-checked trust,
    and write it into the model's scale and bias (in place)."""
    logits, y = raw_logits(model, rows, layout), labels(rows, spec)
    trust, checked_on = forward_trust(logits, y, rows[PARTITION_COLUMN].astype(str).to_numpy())
    platt_slope, platt_intercept = fit_platt(logits, y)
    slope, intercept = 1 - trust + trust * platt_slope, trust * platt_intercept
    return _apply(model, logits, y, slope, intercept, trust, checked_on, fitted_on)


def fit_intercept(logits: np.ndarray, y: np.ndarray, slope: float) -> float:
    """The intercept `b` of `P(y=1) = sigmoid(slope * logit + b)` by maximum likelihood with the
    slope held (Platt's smoothed targets keep it finite for one class). The likelihood's gradient
    in `b` rises monotonically, so its root is bracketed and found by Brent's method: Newton's
    steps diverge when the scaled logits start far out where the sigmoid is flat."""
    import numpy as np
    from scipy.optimize import brentq
    from scipy.special import expit

    if len(y) == 0:
        return 0.0
    positives = float(y.sum())
    negatives = float(len(y) - positives)
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    scaled = slope * logits.astype(float)

    def gradient(intercept: float) -> float:
        return float(np.sum(expit(scaled + intercept) - target))

    # beyond these every probability is within 1e-17 of 0 or 1, past every smoothed target
    reach = float(np.max(np.abs(scaled))) + 40.0
    return float(brentq(gradient, -reach, reach, xtol=1e-12))


def calibrate_level(
    model: CatBoostClassifier,
    logits: np.ndarray,
    y: np.ndarray,
    slope: float,
    trust: float,
    fitted_on: list[str] | None = None,
) -> Calibration:
    """Write into `model` a map with the given `slope` (another fit's, weighed by its `trust`) and
    the intercept that fits the model's own `logits` to the labels `y` (see `fit_intercept`)."""
    return _apply(model, logits, y, slope, fit_intercept(logits, y, slope), trust, None, fitted_on)


def _apply(
    model: CatBoostClassifier,
    logits: np.ndarray,
    y: np.ndarray,
    slope: float,
    intercept: float,
    trust: float,
    checked_on: str | None,
    fitted_on: list[str] | None,
) -> Calibration:
    """Write `slope * logit + intercept` into the model's scale and bias and record it."""
    scale, bias = model.get_scale_and_bias()
    bias = float(bias[0]) if isinstance(bias, list) else float(bias)
    model.set_scale_and_bias(slope * float(scale), slope * bias + intercept)
    return Calibration(
        slope=slope,
        intercept=intercept,
        base_scale=float(scale),
        base_bias=bias,
        rows=len(y),
        label_rate=float(y.mean()) if len(y) else math.nan,
        mean_before=_sigmoid_mean(logits),
        mean_after=_sigmoid_mean(slope * logits + intercept),
        trust=trust,
        checked_on=checked_on,
        fitted_on=list(fitted_on or []),
    )


def uncalibrated(model: CatBoostClassifier, calibration: Calibration) -> CatBoostClassifier:
    """A copy of a calibrated model as it was before calibration (for the before/after report)."""
    copy = model.copy()
    copy.set_scale_and_bias(calibration.base_scale, calibration.base_bias)
    return copy


def fit_calibrated(
    train_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    spec: PipelineSpec,
    layout: FeatureLayout,
    validation_partitions: list[str] | None = None,
) -> tuple[CatBoostClassifier, Calibration]:
    """Train (early-stopped on the validation rows when the params ask for it), then calibrate on
    them: the model that the evaluation, the backtest and serving all score."""
    model = train(train_rows, validation_rows, spec, layout, spec.training.params)
    return model, calibrate(model, validation_rows, spec, layout, validation_partitions)
