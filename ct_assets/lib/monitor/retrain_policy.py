"""When to retrain: on evidence that the serving model is doing harm, not on drift alone.

Most drift does not hurt a model, and on large partitions every drift test says "drift". So a
retrain is asked for only on evidence of harm, measured against what the model itself promised:

- **Performance.** The serving model's mean AUC over newly labelled partitions is compared with
  its own mean AUC over its holdout's partitions (each AUC within one partition on both sides, so
  that a pooled holdout's separation between partitions, a season say, is not counted as a promise)
  by a one-sided z-test. The standard error comes from the data: Hanley & McNeil's formula for each
  AUC from its partition's positives and negatives, plus the variation between partitions that the
  model showed on its holdout (a drop that starts inside the window spreads the window's AUCs, and
  is not the model's ordinary variation). A record with fewer than 3 holdout partitions with an AUC
  is compared on its pooled holdout AUC, the window's own spread widening the error. The window is
  the last `performance_window` partitions, widened until it holds `MIN_WINDOW_ROWS` labelled rows,
  so small partitions (a month of daily rows) are judged on enough rows and large ones on recent
  rows only; until the model has served that many labelled rows, nothing is judged. A second test
  takes every partition since the model served, so that a slow decay, too small for a few
  partitions to show, adds up; the two tests share the level (Bonferroni).
- **Label rate.** The window's positives are compared with the registry's reference label rate
  (the training window's) by a z-test; a shift retrains only when the model's own predictions did
  not follow it (the mean predicted probability is also significantly off), since a shift the
  features explain (a season) needs no new model. Both tests widen their error to the spread of
  the window's partitions when that is larger than binomial sampling (a hot and a cool month).
  The window counts partitions with one class too.
- **Drift.** Importance-weighted drift confirmed in `confirm_partitions` of the last
  `confirm_window` partitions is a reason to expect harm, so it lowers the bar of the performance
  test to `DRIFT_LEVEL` (5%); confirmed drift with no measurable harm does not retrain.

The significance levels are statistical conventions, not fitted to any dataset; every pipeline
uses them. Each decision carries its evidence as short lines for the run's tags and the UI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist, mean, pvariance, variance

from ct_assets.lib.core.spec import MonitoringSpec, TrainingSpec
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.model.records import ModelVersion

HARM_LEVEL = 0.01  # one-sided: an AUC drop this unlikely under the model's own holdout figures
DRIFT_LEVEL = 0.05  # one-sided: the level when confirmed drift explains why harm is likely


def z_bar(level: float, tests: int = 1) -> float:
    """The z that a one-sided test must reach at `level` when `tests` tests share it (Bonferroni)."""
    return NormalDist().inv_cdf(1 - level / tests)


Z_HARM = z_bar(HARM_LEVEL)  # 2.326
Z_LABEL = 3.291  # two-sided 0.1% level: a label rate this far from the reference
Z_FOLLOWED = 1.960  # two-sided 5% level: the model's mean prediction missed the observed rate
MIN_WINDOW_ROWS = 200  # the performance window widens until it holds this many labelled rows
MIN_HOLDOUT_AUCS = 3  # holdout partitions with an AUC needed to judge per partition


@dataclass(frozen=True)
class PartitionSignal:
    """What monitoring learned about one partition."""

    partition: str
    drift_share: float | None  # importance share of drifted features; None when skipped
    drifted: list[str] = field(default_factory=list)
    auc: float | None = None  # the serving model's AUC on the partition
    rows: int | None = None  # labelled rows the AUC and label rate come from
    label_rate: float | None = None  # the partition's positive rate
    mean_score: float | None = None  # the serving model's mean predicted probability


@dataclass(frozen=True)
class Expectation:
    """What the serving model promised: its holdout AUC (on `holdout_rows` rows with positive rate
    `holdout_positive_rate`), its AUC within each holdout partition, and the label rate of its
    training window."""

    auc: float | None
    holdout_rows: int | None = None
    holdout_positive_rate: float | None = None
    label_rate: float | None = None
    partitions: tuple[PartitionSignal, ...] = ()  # holdout partitions holding both classes

    @classmethod
    def of(cls, record: ModelVersion) -> Expectation:
        """From a registry record: its evaluation's holdout figures and its training window's label
        rate."""
        holdout = record.evaluation.candidate if record.evaluation else None
        if holdout is None:
            return cls(None, label_rate=record.window_label_rate())
        partitions = holdout_partitions(record.evaluation.partitions)
        return cls(holdout.auc, holdout.rows, holdout.positive_rate, record.window_label_rate(), partitions)


def holdout_partitions(figures: Mapping[str, Metrics]) -> tuple[PartitionSignal, ...]:
    """The holdout partitions' figures (by partition key) that have an AUC, as signals."""
    return tuple(
        PartitionSignal(key, None, auc=m.auc, rows=m.rows, label_rate=m.positive_rate)
        for key, m in sorted(figures.items())
        if m.auc is not None
    )


@dataclass(frozen=True)
class Decision:
    retrain: bool
    trigger: str | None  # "drift" | "performance" | "first_model" | None
    reason: str
    evidence: dict[str, str] = field(default_factory=dict)  # short lines: "auc", "label_rate", "drift"


def weighted_share(drifted: list[str], importance: dict[str, float]) -> float:
    """The share of the model's importance carried by the drifted features."""
    return sum(importance.get(column, 0.0) for column in drifted)


def auc_variance(auc: float, positives: float, negatives: float) -> float:
    """Hanley & McNeil (1982): the sampling variance of an AUC from its class counts."""
    if positives < 1 or negatives < 1:
        return math.inf
    a = min(max(auc, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )


def _labelled(signals: list[PartitionSignal], both_classes: bool) -> list[PartitionSignal]:
    return [
        s for s in signals if s.rows and s.label_rate is not None and (s.auc is not None or not both_classes)
    ]


def performance_window(
    signals: list[PartitionSignal], rules: MonitoringSpec, both_classes: bool = True
) -> list[PartitionSignal]:
    """The last `performance_window` labelled partitions, widened to `MIN_WINDOW_ROWS` rows: those
    with an AUC (both classes) for the AUC test; with `both_classes=False`, every labelled one, as
    the label-rate test needs (a winter month without a hot day has a rate, 0, and leaving it out
    would raise the window's rate above the training window's, which counts it)."""
    scored = _labelled(signals, both_classes)
    window: list[PartitionSignal] = []
    for signal in reversed(scored):
        if len(window) >= rules.performance_window and sum(s.rows or 0 for s in window) >= MIN_WINDOW_ROWS:
            break
        window.insert(0, signal)
    return window


@dataclass(frozen=True)
class AucTest:
    observed: float
    expected: float
    se: float
    partitions: list[str]
    rows: int
    holdout_partitions: int = 0  # 0: the expectation is the pooled holdout AUC

    @property
    def z(self) -> float:
        return (self.expected - self.observed) / self.se if self.se > 0 else 0.0

    def describe(self) -> str:
        span = (
            self.partitions[0]
            if len(self.partitions) == 1
            else f"{self.partitions[0]}..{self.partitions[-1]}"
        )
        holdout = (
            f"holdout {self.expected:.3f} (mean of {self.holdout_partitions} partitions)"
            if self.holdout_partitions
            else f"holdout {self.expected:.3f}"
        )
        return (
            f"AUC {self.observed:.3f} on {span} ({len(self.partitions)} "
            f"partition{'' if len(self.partitions) == 1 else 's'}, {self.rows} rows) "
            f"vs {holdout}: z {self.z:.2f}"
        )


def sampling_variances(signals: list[PartitionSignal] | tuple[PartitionSignal, ...]) -> list[float]:
    """Each partition AUC's sampling variance (Hanley & McNeil from its class counts)."""
    return [
        auc_variance(
            s.auc or 0.0,
            (s.rows or 0) * (s.label_rate or 0.0),
            (s.rows or 0) * (1 - (s.label_rate or 0.0)),
        )
        for s in signals
    ]


def mean_auc_variance(signals: list[PartitionSignal]) -> float:
    """The variance of the mean of these partitions' AUCs: from sampling, or from the spread the
    AUCs show when that is larger (3 partitions or more)."""
    aucs = [s.auc or 0.0 for s in signals]
    sampling = sum(sampling_variances(signals)) / len(signals) ** 2
    spread = pvariance(aucs) / (len(aucs) - 1) if len(aucs) >= 3 else 0.0
    return max(sampling, spread)


def between_partitions(holdout: tuple[PartitionSignal, ...]) -> float:
    """How much a healthy model's AUC varies from partition to partition beyond sampling: the
    variance of its holdout partitions' AUCs less their mean sampling variance (at least 0)."""
    aucs = [s.auc or 0.0 for s in holdout]
    return max(0.0, variance(aucs) - mean(sampling_variances(holdout)))


def auc_test(window: list[PartitionSignal], expected: Expectation) -> AucTest | None:
    """The window's mean AUC against the holdout's mean AUC per partition (its pooled AUC when the
    record has fewer than `MIN_HOLDOUT_AUCS` partition AUCs), with a standard error from both
    samples. Per partition, each AUC's variance is its sampling variance plus the variation
    between partitions the model showed on its holdout, so a drop that starts inside the window
    (which spreads the window's AUCs) is not taken for the model's ordinary variation."""
    if not window or expected.auc is None:
        return None
    if len(expected.partitions) >= MIN_HOLDOUT_AUCS:
        promised = mean(s.auc or 0.0 for s in expected.partitions)
        between = between_partitions(expected.partitions)
        live = sum(v + between for v in sampling_variances(window)) / len(window) ** 2
        holdout = (
            sum(v + between for v in sampling_variances(expected.partitions)) / len(expected.partitions) ** 2
        )
        judged_partitions = len(expected.partitions)
    else:
        live = mean_auc_variance(window)
        promised, holdout, judged_partitions = expected.auc, 0.0, 0
        if expected.holdout_rows and expected.holdout_positive_rate is not None:
            n, p = expected.holdout_rows, expected.holdout_positive_rate
            holdout = auc_variance(expected.auc, n * p, n * (1 - p))
    se = math.sqrt(live + holdout) if math.isfinite(live + holdout) else math.inf
    return AucTest(
        mean(s.auc or 0.0 for s in window),
        promised,
        se,
        [s.partition for s in window],
        sum(s.rows or 0 for s in window),
        judged_partitions,
    )


def mean_difference_z(
    window: list[PartitionSignal], differences: list[float], variances: list[float]
) -> float:
    """z of the row-weighted mean of per-partition differences (a rate minus what was expected of
    it), its variance from sampling (`variances`: each partition's binomial variance per row), or
    from the spread of the differences between partitions when that is larger (variation beyond
    sampling: a season, a week's weather), as for the AUC test."""
    rows = [s.rows or 0 for s in window]
    total = sum(rows)
    weights = [n / total for n in rows]
    difference = sum(w * d for w, d in zip(weights, differences, strict=True))
    sampling = sum(n * v for n, v in zip(rows, variances, strict=True)) / total**2
    spread = 0.0
    if len(window) >= 3:
        k = len(window)
        spread = (
            k
            / (k - 1)
            * sum(w * w * (d - difference) ** 2 for w, d in zip(weights, differences, strict=True))
        )
    variance = max(sampling, spread)
    return difference / math.sqrt(variance) if variance > 0 else 0.0


def label_shift(window: list[PartitionSignal], expected: Expectation) -> tuple[bool, str] | None:
    """Did the label rate move significantly from the reference, without the model following?
    Both tests weigh the window's partitions by their rows and allow for the variation between
    partitions (`mean_difference_z`)."""
    if not window or expected.label_rate is None:
        return None
    rows = sum(s.rows or 0 for s in window)
    positives = sum((s.rows or 0) * (s.label_rate or 0.0) for s in window)
    p0 = min(max(expected.label_rate, 1e-6), 1 - 1e-6)
    rates = [s.label_rate or 0.0 for s in window]
    z = mean_difference_z(window, [r - p0 for r in rates], [p0 * (1 - p0)] * len(window))
    text = f"label rate {positives / rows:.3f} vs reference {p0:.3f} over {rows} rows: z {z:.2f}"
    if abs(z) < Z_LABEL:
        return False, text
    scored = [s for s in window if s.mean_score is not None]
    if len(scored) < len(window):
        return True, f"{text}; the model's mean prediction is not known"
    predicted = sum((s.rows or 0) * (s.mean_score or 0.0) for s in window)
    scores = [s.mean_score or 0.0 for s in window]
    followed_z = mean_difference_z(
        window, [r - m for r, m in zip(rates, scores, strict=True)], [m * (1 - m) for m in scores]
    )
    missed = abs(followed_z) >= Z_FOLLOWED and followed_z * z > 0
    verdict = "not followed" if missed else "followed"
    return missed, f"{text}; mean prediction {predicted / rows:.3f} ({verdict}, z {followed_z:.2f})"


def drift_confirmed(signals: list[PartitionSignal], rules: MonitoringSpec) -> tuple[bool, str]:
    """Importance-weighted drift in `confirm_partitions` of the last `confirm_window` partitions."""
    window = signals[-rules.confirm_window :]
    drifted = [s for s in window if s.drift_share is not None and s.drift_share >= rules.drift_share]
    text = f"drift in {len(drifted)} of the last {len(window)} partitions (needs {rules.confirm_partitions})"
    if len(drifted) < rules.confirm_partitions:
        return False, text
    worst = max(drifted, key=lambda s: s.drift_share or 0.0)
    features = sorted({c for s in drifted for c in s.drifted})
    return True, f"{text}; up to {worst.drift_share:.0%} of importance ({', '.join(features[:4])})"


def too_few_rows(window: list[PartitionSignal]) -> str | None:
    """Why the window is not yet judged (None when it is): fewer than `MIN_WINDOW_ROWS` labelled
    rows since the model served, as right after a retrain on small partitions."""
    rows = sum(s.rows or 0 for s in window)
    if rows >= MIN_WINDOW_ROWS:
        return None
    return (
        f"waiting for {MIN_WINDOW_ROWS} labelled rows: {rows} in {len(window)} scored partitions "
        "since the model served"
    )


def _auc_evidence(
    signals: list[PartitionSignal], expected: Expectation, rules: MonitoringSpec
) -> tuple[list[AucTest], dict[str, str]]:
    """The AUC tests: on the recent window, and on every partition since the model served when
    that span is longer (a slow decay, too small for a few partitions to show, adds up over it)."""
    window = performance_window(signals, rules)
    waiting = too_few_rows(window)
    if waiting:
        return [], {"auc": waiting}
    recent = auc_test(window, expected)
    if recent is None:
        return [], {"auc": "no labelled partitions with row counts yet"}
    tests, evidence = [recent], {"auc": recent.describe()}
    served = _labelled(signals, both_classes=True)
    if len(served) > len(window):
        span = auc_test(served, expected)
        if span is not None:
            tests.append(span)
            evidence["auc_since_served"] = span.describe()
    return tests, evidence


def significant_drop(tests: list[AucTest], level: float) -> tuple[AucTest, float] | None:
    """The test with the largest z, with its bar, when it reaches the bar that `level` sets for
    this many tests; None otherwise."""
    if not tests:
        return None
    bar = z_bar(level, len(tests))
    worst = max(tests, key=lambda t: t.z)
    return (worst, bar) if worst.z >= bar else None


def performance_decision(
    signals: list[PartitionSignal], expected: Expectation, rules: MonitoringSpec
) -> Decision:
    """Retrain when the AUC fell significantly below the holdout's, or below the floor, or when the
    label rate moved and the model did not follow."""
    tests, evidence = _auc_evidence(signals, expected, rules)
    window = performance_window(signals, rules, both_classes=False)
    shift = None if too_few_rows(window) else label_shift(window, expected)
    if shift is not None:
        evidence["label_rate"] = shift[1]
    drop = significant_drop(tests, HARM_LEVEL)
    if drop is not None:
        return Decision(
            True, "performance", f"significant AUC drop: {drop[0].describe()} >= {drop[1]:.3f}", evidence
        )
    test = tests[0] if tests else None
    if (
        test is not None
        and math.isfinite(test.se)
        and test.observed + Z_HARM * test.se < rules.performance_floor_auc
    ):
        return Decision(
            True,
            "performance",
            f"AUC below the floor {rules.performance_floor_auc:.3f}: {evidence['auc']}",
            evidence,
        )
    if shift is not None and shift[0]:
        return Decision(True, "performance", f"label-rate shift: {shift[1]}", evidence)
    return Decision(False, None, "no evidence of harm: " + "; ".join(evidence.values()), evidence)


def drift_decision(signals: list[PartitionSignal], expected: Expectation, rules: MonitoringSpec) -> Decision:
    """Retrain when drift is confirmed and the AUC dropped at the drift-lowered bar."""
    confirmed, drift_text = drift_confirmed(signals, rules)
    tests, evidence = _auc_evidence(signals, expected, rules)
    evidence = {"drift": drift_text, **evidence}
    if not confirmed:
        return Decision(False, None, drift_text, evidence)
    drop = significant_drop(tests, DRIFT_LEVEL)
    if drop is not None:
        return Decision(True, "drift", f"{drift_text}; it costs accuracy: {drop[0].describe()}", evidence)
    return Decision(False, None, f"{drift_text}, but no significant harm: {evidence['auc']}", evidence)


def first_model_decision(partition_rows: list[tuple[str, int]], training: TrainingSpec) -> Decision:
    """With no champion yet, train the first one as soon as the data allows: enough partitions for
    the validation and holdout splits plus at least one to train on, and `min_rows` training rows."""
    held_out = training.validation_partitions + training.holdout_partitions
    window = partition_rows[-training.window_partitions :]
    train_rows = sum(rows for _, rows in window[:-held_out]) if len(window) > held_out else 0
    if len(window) <= held_out or train_rows < training.min_rows:
        return Decision(
            False,
            None,
            f"no champion yet; waiting for data: {len(window)} partitions and {train_rows} training rows "
            f"(needs more than {held_out} partitions and {training.min_rows} rows)",
        )
    return Decision(
        True,
        "first_model",
        f"no champion yet and {train_rows} training rows in {len(window) - held_out} partitions: "
        "train the first model",
    )
