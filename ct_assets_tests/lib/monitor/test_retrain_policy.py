"""Retrain rules: confirmed, important drift that costs accuracy, or a performance drop."""

from __future__ import annotations

from ct_assets.lib.core.spec import MonitoringSpec, TrainingSpec
from ct_assets.lib.monitor.retrain_policy import (
    PartitionSignal,
    drift_decision,
    first_model_decision,
    performance_decision,
    weighted_share,
)

RULES = MonitoringSpec(
    drift_share=0.3,
    confirm_partitions=2,
    confirm_window=3,
    severe_drift_share=0.6,
    performance_floor_auc=0.6,
    performance_drop=0.03,
    performance_window=3,
)


def _s(
    day: int, share: float | None, auc: float | None = 0.70, drifted: tuple[str, ...] = ()
) -> PartitionSignal:
    return PartitionSignal(f"2013-02-{day:02d}", share, list(drifted), auc)


def test_importance_weights_drift() -> None:
    assert (
        weighted_share(["origin_temp", "dest"], {"origin_temp": 0.05, "dest": 0.2, "carrier": 0.75}) == 0.25
    )


def test_one_drifted_partition_is_not_confirmed() -> None:
    decision = drift_decision([_s(1, 0.1), _s(2, 0.1), _s(3, 0.8, drifted=("dest",))], 0.70, RULES)
    assert not decision.retrain and decision.reason == "drift in 1 of the last 3 partitions (needs 2)"


def test_confirmed_drift_that_does_not_hurt_is_not_worth_a_retrain() -> None:
    decision = drift_decision(
        [_s(1, 0.1), _s(2, 0.4, drifted=("dest",)), _s(3, 0.5, drifted=("dest",))], 0.70, RULES
    )
    assert not decision.retrain and "champion holds its AUC" in decision.reason


def test_confirmed_drift_with_slipping_auc_or_severe_drift_retrains() -> None:
    slipping = [_s(1, 0.1, 0.68), _s(2, 0.4, 0.67, ("dest",)), _s(3, 0.5, 0.67, ("dest",))]
    decision = drift_decision(slipping, 0.70, RULES)
    assert decision.retrain and decision.trigger == "drift" and "slipping" in decision.reason
    severe = [_s(1, 0.1), _s(2, 0.7, drifted=("carrier",)), _s(3, 0.9, drifted=("carrier",))]
    assert drift_decision(severe, 0.70, RULES).reason.endswith("severe")


def test_performance_floor_and_drop() -> None:
    assert performance_decision([_s(1, 0, 0.58), _s(2, 0, 0.59), _s(3, 0, 0.57)], 0.7, RULES).reason == (
        "live AUC 0.580 over 2013-02-01..2013-02-03 < floor 0.600"
    )
    drop = performance_decision([_s(1, 0, 0.65), _s(2, 0, 0.66), _s(3, 0, 0.64)], 0.70, RULES)
    assert drop.retrain and "< champion holdout 0.700 - 0.030" in drop.reason
    assert not performance_decision([_s(1, 0, 0.69), _s(2, 0, 0.70), _s(3, 0, 0.68)], 0.70, RULES).retrain
    assert not performance_decision([_s(1, 0, 0.5)], 0.70, RULES).retrain  # not enough partitions yet


def test_first_model_waits_for_enough_partitions_and_rows() -> None:
    training = TrainingSpec(
        window_partitions=10, validation_partitions=2, holdout_partitions=2, min_rows=1000
    )
    days = [(f"2013-01-{d:02d}", 400) for d in range(1, 10)]
    assert not first_model_decision(days[:4], training).retrain  # nothing left to train on
    waiting = first_model_decision(days[:6], training)  # 2 training partitions: 800 rows
    assert not waiting.retrain and "800 training rows" in waiting.reason
    ready = first_model_decision(days[:7], training)
    assert ready.retrain and ready.trigger == "first_model" and "1200 training rows" in ready.reason
    assert first_model_decision([], training).retrain is False
