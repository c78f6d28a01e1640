"""Retrain rules on constructed signals: a significant AUC drop against the holdout's (per
partition when the record has it), a label-rate shift the model does not follow, and drift that
retrains only when confirmed and harmful."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ct_assets.lib.core.spec import MonitoringSpec, TrainingSpec
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.monitor.retrain_policy import (
    AucTest,
    Expectation,
    PartitionSignal,
    auc_variance,
    drift_decision,
    first_model_decision,
    holdout_partitions,
    performance_decision,
    performance_window,
    weighted_share,
)
from ct_assets_tests.conftest import evaluation, holdout_metrics, model_version

RULES = MonitoringSpec()  # the defaults every pipeline gets
# a model that promised AUC 0.75 on a holdout of 3,000 rows with 20% positives
EXPECTED = Expectation(auc=0.75, holdout_rows=3000, holdout_positive_rate=0.2, label_rate=0.2)


def _holdout(figures: dict[str, tuple[float | None, int, float]]) -> tuple[PartitionSignal, ...]:
    """Holdout partitions from (AUC, rows, positive rate) per partition key."""
    return holdout_partitions({k: Metrics(**holdout_metrics(*f)) for k, f in figures.items()})


def _s(
    day: int,
    auc: float | None = 0.75,
    rows: int = 1000,
    rate: float = 0.2,
    share: float | None = 0.0,
    drifted: tuple[str, ...] = (),
    score: float | None = None,
) -> PartitionSignal:
    return PartitionSignal(
        f"2013-02-{day:02d}", share, list(drifted), auc, rows, rate, rate if score is None else score
    )


def test_hanley_mcneil_standard_error() -> None:
    # A = 0.5 with 100 positives and 100 negatives: Q1 = Q2 = 1/3
    assert auc_variance(0.5, 100, 100) == pytest.approx((0.25 + 99 * (1 / 3 - 0.25) * 2) / 10_000)
    assert auc_variance(0.75, 20, 80) > auc_variance(0.75, 200, 800)
    assert auc_variance(0.75, 0, 80) == float("inf")


def test_importance_weights_drift() -> None:
    assert (
        weighted_share(["origin_temp", "dest"], {"origin_temp": 0.05, "dest": 0.2, "carrier": 0.75}) == 0.25
    )


def test_a_significant_drop_retrains_and_a_small_one_does_not() -> None:
    dropped = performance_decision([_s(1, 0.70), _s(2, 0.69), _s(3, 0.70)], EXPECTED, RULES)
    assert dropped.retrain and dropped.trigger == "performance"
    assert "significant AUC drop" in dropped.reason and "vs holdout 0.750" in dropped.evidence["auc"]
    held = performance_decision([_s(1, 0.74), _s(2, 0.735), _s(3, 0.745)], EXPECTED, RULES)
    assert not held.retrain and held.reason.startswith("no evidence of harm")


def test_the_same_drop_on_small_partitions_is_not_significant() -> None:
    # 3 x 40 rows: the window widens to 200 rows, and a 0.05 drop is within the noise of 8 positives
    small = [_s(day, 0.70, rows=40) for day in range(1, 6)]
    assert len(performance_window(small, RULES)) == 5
    assert not performance_decision(small, EXPECTED, RULES).retrain


def test_spread_between_partitions_widens_the_error() -> None:
    # the same mean AUC, but partitions that disagree a lot: not evidence of a drop
    steady = [_s(1, 0.70), _s(2, 0.70), _s(3, 0.70)]
    noisy = [_s(1, 0.55), _s(2, 0.85), _s(3, 0.70)]
    assert performance_decision(steady, EXPECTED, RULES).retrain
    assert not performance_decision(noisy, EXPECTED, RULES).retrain


def test_label_shift_retrains_only_when_the_model_does_not_follow() -> None:
    unfollowed = performance_decision([_s(d, rate=0.3, score=0.2) for d in (1, 2, 3)], EXPECTED, RULES)
    assert unfollowed.retrain and unfollowed.reason.startswith("label-rate shift")
    assert "not followed" in unfollowed.evidence["label_rate"]
    followed = performance_decision([_s(d, rate=0.3, score=0.29) for d in (1, 2, 3)], EXPECTED, RULES)
    assert not followed.retrain and "(followed" in followed.evidence["label_rate"]
    small_shift = performance_decision([_s(d, rate=0.21, score=0.2) for d in (1, 2, 3)], EXPECTED, RULES)
    assert not small_shift.retrain


def test_a_miss_that_varies_between_partitions_is_not_evidence_but_a_steady_one_is() -> None:
    """Summer months (100 rows each): the rate is far above the year-round reference, and the
    model's mean prediction misses it by 0.15, -0.03 and 0.06 (a hot and a cool month): binomial
    sampling alone would call the 0.06 mean miss significant (z 2.1); the spread between months
    does not (z 1.2)."""
    varying = [_s(1, rows=100, rate=0.55, score=0.40), _s(2, rows=100, rate=0.37, score=0.40)]
    varying.append(_s(3, rows=100, rate=0.46, score=0.40))
    decision = performance_decision(varying, EXPECTED, RULES)
    assert not decision.retrain and "(followed" in decision.evidence["label_rate"], decision.evidence
    steady = [_s(d, rows=100, rate=0.46 + 0.01 * (d - 2), score=0.40) for d in (1, 2, 3)]
    assert performance_decision(steady, EXPECTED, RULES).reason.startswith("label-rate shift")


def test_nothing_is_judged_before_the_model_has_served_200_labelled_rows() -> None:
    """Right after a retrain on monthly partitions: one month of 30 rows, every rule silent."""
    month = [_s(1, 0.3, rows=30, rate=0.9, score=0.2)]
    decision = performance_decision(month, EXPECTED, RULES)
    assert not decision.retrain and decision.evidence == {
        "auc": "waiting for 200 labelled rows: 30 in 1 scored partitions since the model served"
    }
    assert not drift_decision([_s(1, 0.3, rows=30, share=0.9)] * 3, EXPECTED, RULES).retrain
    assert performance_decision(month * 7, EXPECTED, RULES).retrain  # 210 rows: judged


def test_drift_not_confirmed_does_not_retrain_even_with_a_drop() -> None:
    signals = [_s(1, 0.72, share=0.1), _s(2, 0.72, share=0.1), _s(3, 0.72, share=0.8, drifted=("dest",))]
    decision = drift_decision(signals, EXPECTED, RULES)
    assert not decision.retrain and decision.reason == "drift in 1 of the last 3 partitions (needs 2)"


def test_confirmed_drift_retrains_on_a_moderate_drop_but_not_without_harm() -> None:
    moderate = [_s(1, 0.715, share=0.1), _s(2, 0.715, share=0.5, drifted=("dest",)), _s(3, 0.715, share=0.5)]
    assert drift_decision(moderate, EXPECTED, RULES).retrain  # z between the drift level's bar and Z_HARM
    assert not performance_decision(moderate, EXPECTED, RULES).retrain
    harmless = [_s(1, 0.75, share=0.9, drifted=("dest",)), _s(2, 0.76, share=0.9), _s(3, 0.75, share=0.9)]
    decision = drift_decision(harmless, EXPECTED, RULES)
    assert not decision.retrain and "no significant harm" in decision.reason
    assert decision.evidence["drift"].startswith("drift in 3 of the last 3 partitions")


def test_floor_and_missing_figures() -> None:
    poor = Expectation(auc=0.56, holdout_rows=3000, holdout_positive_rate=0.2)
    assert performance_decision([_s(d, 0.55) for d in (1, 2, 3)], poor, RULES).reason.startswith("AUC below")
    assert not performance_decision([], EXPECTED, RULES).retrain
    assert not performance_decision([_s(1, 0.6)], Expectation(None), RULES).retrain


def test_expectation_from_a_registry_record() -> None:
    record = model_version(
        evaluation=evaluation(0.7),
        label_rate={"train": 0.2, "validation": 0.3, "holdout": 0.25},
        rows={"train": 800, "validation": 100, "holdout": 100},
    )
    expected = Expectation.of(record)
    assert (expected.auc, expected.holdout_rows, expected.holdout_positive_rate) == (0.7, 500, 0.25)
    assert expected.label_rate == pytest.approx((0.2 * 800 + 0.3 * 100 + 0.25 * 100) / 1000)
    assert Expectation.of(model_version()) == Expectation(None)
    by_month = evaluation(
        0.7, partitions={"2013-01": holdout_metrics(0.66), "2013-02": holdout_metrics(None)}
    )
    (january,) = Expectation.of(model_version(evaluation=by_month)).partitions
    assert (january.partition, january.auc) == ("2013-01", 0.66)


def test_the_promise_is_the_holdouts_auc_within_a_partition_not_across_them() -> None:
    """A seasonal series: the pooled holdout AUC (0.95) counts the summer/winter separation, each
    month's own AUC is 0.80. Months at 0.80 keep their promise; months at 0.66 break it."""
    months = {f"2012-{m:02d}": (0.80 + (0.01 if m % 2 else -0.01), 100, 0.4) for m in range(5, 10)}
    months["2012-01"] = (None, 100, 0.0)  # no hot day: no AUC, left out of the promise
    seasonal = Expectation(0.95, 1200, 0.15, 0.15, _holdout(months))
    assert [s.partition for s in seasonal.partitions] == [f"2012-{m:02d}" for m in range(5, 10)]
    summer = [_s(d, 0.80, rows=100, rate=0.4, score=0.4) for d in (1, 2, 3)]
    assert not performance_decision(summer, seasonal, RULES).retrain
    pooled = Expectation(0.95, 1200, 0.15, 0.15)
    assert performance_decision(summer, pooled, RULES).retrain  # what the pooled promise would do
    worse = performance_decision(
        [_s(d, 0.66, rows=100, rate=0.4, score=0.4) for d in (1, 2, 3)], seasonal, RULES
    )
    assert worse.retrain and "mean of 5 partitions" in worse.evidence["auc"], worse


def test_a_drop_that_starts_inside_the_window_is_held_to_the_models_own_day_to_day_range() -> None:
    """A steady model (holdout days 0.74-0.76) whose last two days fall to 0.62: the window's own
    spread would hide the drop (z 1.9 < 2.326); the holdout's range does not."""
    steady = _holdout({f"2013-01-{d:02d}": (0.74 + 0.01 * (d - 11), 1000, 0.2) for d in (10, 11, 12)})
    expected = Expectation(0.76, 3000, 0.2, 0.2, steady)
    window = [_s(1, 0.75), _s(2, 0.62), _s(3, 0.62)]
    decision = performance_decision(window, expected, RULES)
    assert decision.retrain and decision.reason.startswith("significant AUC drop"), decision.reason
    wobbly = _holdout(
        {"2013-01-10": (0.66, 1000, 0.2), "2013-01-11": (0.84, 1000, 0.2), "2013-01-12": (0.75, 1000, 0.2)}
    )
    assert not performance_decision(window, Expectation(0.76, 3000, 0.2, 0.2, wobbly), RULES).retrain


def test_first_model_waits_for_enough_data() -> None:
    training = TrainingSpec(window_partitions=5, validation_partitions=1, holdout_partitions=1, min_rows=100)
    assert not first_model_decision([("a", 50), ("b", 50)], training).retrain
    assert first_model_decision([("a", 60), ("b", 60), ("c", 10), ("d", 10)], training).retrain


def test_the_label_rate_counts_partitions_with_one_class() -> None:
    """Two months without a positive and one at 0.45 whose mean prediction was 0.3 (80 rows each):
    over the three the rate is 0.15, the reference's. Left out, the one-class months would leave a
    window of one hot month, far above the reference."""
    cold = [_s(d, auc=None, rows=80, rate=0.0, score=0.0) for d in (1, 2)]
    hot = _s(3, rows=80, rate=0.45, score=0.30)
    expected = replace(EXPECTED, label_rate=0.15)
    rules = RULES.model_copy(update={"performance_window": 1})
    assert [s.partition for s in performance_window([*cold, hot], rules)] == ["2013-02-03"]
    window = performance_window([*cold, hot], rules, both_classes=False)
    assert [s.partition for s in window] == ["2013-02-01", "2013-02-02", "2013-02-03"]
    decision = performance_decision([*cold, hot], expected, rules)
    assert "label rate 0.150 vs reference 0.150" in decision.evidence["label_rate"], decision.evidence
    assert not decision.retrain


def test_a_slow_decay_adds_up_over_the_partitions_since_the_model_served() -> None:
    """A model that promised 0.75 on each of three holdout days delivers 0.71 every day: the last
    three days alone fall short of the bar; twelve days since it served reach the bar that the
    two tests share."""
    holdout = _holdout({f"2013-01-{d:02d}": (0.75, 1000, 0.2) for d in (1, 2, 3)})
    expected = replace(EXPECTED, partitions=holdout)
    recent = performance_decision([_s(d, 0.71) for d in (1, 2, 3)], expected, RULES)
    assert not recent.retrain and "auc_since_served" not in recent.evidence, recent.evidence
    served = performance_decision([_s(d, 0.71) for d in range(1, 13)], expected, RULES)
    assert served.retrain and "on 2013-02-01..2013-02-12 (12 partitions" in served.reason, served.reason
    assert served.reason.endswith(">= 2.576"), served.reason


def test_an_auc_test_names_its_span_and_counts_in_words() -> None:
    one = AucTest(observed=0.6, expected=0.7, se=0.05, partitions=["2018-06-03"], rows=742)
    assert one.describe().startswith("AUC 0.600 on 2018-06-03 (1 partition, 742 rows) vs holdout 0.700")
    two = AucTest(observed=0.6, expected=0.7, se=0.05, partitions=["2018-06-03", "2018-06-10"], rows=900)
    assert "on 2018-06-03..2018-06-10 (2 partitions, 900 rows)" in two.describe()
