"""The gate's verdicts and their readable reasons."""

from __future__ import annotations

from ct_assets.lib.core.spec import GateSpec
from ct_assets.lib.model.gate import Evaluation, decide
from ct_assets.lib.model.metrics import Metrics

GATE = GateSpec(
    min_auc=0.6,
    max_auc_regression=0.005,
    max_segment_auc_regression=0.02,
    max_log_loss=0.7,
    max_calibration_error=0.1,
    min_segment_rows=200,
)


def _m(auc: float | None, rows: int = 1000, log_loss: float = 0.5, ece: float = 0.02) -> Metrics:
    return Metrics(rows=rows, positive_rate=0.25, auc=auc, f1=0.4, log_loss=log_loss, brier=0.18, ece=ece)


def test_first_model_faces_absolute_criteria_only() -> None:
    verdict = decide(Evaluation(_m(0.65)), None, GATE)
    assert verdict.passed and "no champion yet: absolute criteria only" in verdict.notes
    failed = decide(Evaluation(_m(0.58, log_loss=0.8, ece=0.2)), None, GATE)
    assert not failed.passed
    assert failed.reasons == [
        "AUC 0.580 < minimum 0.600",
        "log-loss 0.800 > maximum 0.700",
        "calibration error 0.200 > maximum 0.100",
    ]


def test_regression_against_the_champion_overall_and_per_segment() -> None:
    champion = Evaluation(_m(0.731), {"origin=JFK": _m(0.74, rows=900), "origin=LGA": _m(0.70, rows=150)})
    candidate = Evaluation(_m(0.712), {"origin=JFK": _m(0.70, rows=900), "origin=LGA": _m(0.50, rows=150)})
    verdict = decide(candidate, champion, GATE)
    assert not verdict.passed
    assert verdict.reasons == [
        "AUC 0.712 < champion 0.731 - 0.005",
        "AUC 0.700 < champion 0.740 - 0.020 on segment origin=JFK",
    ]
    # origin=LGA is below min_segment_rows: too small to judge


def test_small_differences_within_the_allowance_pass() -> None:
    champion = Evaluation(_m(0.731), {"origin=JFK": _m(0.74, rows=900)})
    candidate = Evaluation(_m(0.728), {"origin=JFK": _m(0.725, rows=900)})
    assert decide(candidate, champion, GATE).passed


def test_one_class_holdout_fails_with_a_reason() -> None:
    verdict = decide(Evaluation(_m(None)), None, GATE)
    assert verdict.reasons[0] == "AUC is undefined: the holdout has one class only"
