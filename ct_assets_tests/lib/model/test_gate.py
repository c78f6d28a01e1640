"""The gate's verdicts and their readable reasons: relative to the champion on AUC, log-loss and
calibration (overall and per large segment), floors for the first model, and the better of two
models when the champion has fallen below the floors."""

from __future__ import annotations

import math

import pytest

from ct_assets.lib.core.spec import GateSpec
from ct_assets.lib.model.gate import Evaluation, base_rate_log_loss, decide
from ct_assets.lib.model.metrics import Metrics

GATE = GateSpec(
    min_auc=0.55,
    max_auc_regression=0.005,
    max_log_loss_regression=0.01,
    max_calibration_regression=0.02,
    max_segment_auc_regression=0.02,
    max_segment_log_loss_regression=0.03,
    max_segment_calibration_regression=0.05,
    min_segment_rows=200,
)
BASE = base_rate_log_loss(0.25)  # 0.562


def _m(auc: float | None, rows: int = 1000, log_loss: float = 0.5, ece: float = 0.02) -> Metrics:
    return Metrics(rows=rows, positive_rate=0.25, auc=auc, f1=0.4, log_loss=log_loss, brier=0.18, ece=ece)


def test_base_rate_log_loss_is_the_label_entropy() -> None:
    assert base_rate_log_loss(0.5) == pytest.approx(0.693147, abs=1e-6)
    assert base_rate_log_loss(0.25) == pytest.approx(0.562335, abs=1e-6)


def test_first_model_faces_the_floors_only() -> None:
    verdict = decide(
        Evaluation(_m(0.65, ece=0.3)), None, GATE
    )  # poorly calibrated, yet better than base rate
    assert verdict.passed and any("no champion yet" in n for n in verdict.notes)
    assert verdict.figures["log_loss"] == {"candidate": 0.5, "base_rate": pytest.approx(BASE)}
    failed = decide(Evaluation(_m(0.54, log_loss=0.6)), None, GATE)
    assert not failed.passed
    assert failed.reasons == ["AUC 0.540 < floor 0.550", "log-loss 0.600 >= base-rate predictor's 0.562"]


def test_regression_against_the_champion_overall_and_per_segment() -> None:
    champion = Evaluation(_m(0.731), {"origin=JFK": _m(0.74, rows=900), "origin=LGA": _m(0.70, rows=150)})
    candidate = Evaluation(
        _m(0.712, log_loss=0.52, ece=0.05),
        {"origin=JFK": _m(0.70, rows=900, ece=0.08), "origin=LGA": _m(0.50, rows=150)},
    )
    verdict = decide(candidate, champion, GATE)
    assert not verdict.passed
    assert verdict.reasons == [
        "AUC 0.712 < champion 0.731 - 0.005",
        "log-loss 0.520 > champion 0.500 + 0.010",
        "calibration error 0.050 > champion 0.020 + 0.020",
        "AUC 0.700 < champion 0.740 - 0.020 on segment origin=JFK",
        "calibration error 0.080 > champion 0.020 + 0.050 on segment origin=JFK",
    ]  # origin=LGA is below min_segment_rows: too small to judge
    assert verdict.figures["auc"] == {"candidate": 0.712, "champion": 0.731}
    assert verdict.alert is None


def test_small_differences_within_the_allowances_pass() -> None:
    champion = Evaluation(_m(0.731), {"origin=JFK": _m(0.74, rows=900)})
    candidate = Evaluation(_m(0.728, log_loss=0.505, ece=0.03), {"origin=JFK": _m(0.725, rows=900)})
    assert decide(candidate, champion, GATE).passed


def test_the_log_loss_floor_margin_widens_the_floor() -> None:
    wide = GATE.model_copy(update={"log_loss_floor_margin": 0.05})
    assert not decide(Evaluation(_m(0.6, log_loss=0.58)), None, GATE).passed
    verdict = decide(Evaluation(_m(0.6, log_loss=0.58)), None, wide)
    assert verdict.passed and "log-loss 0.580 < base-rate predictor's 0.562 + 0.050" in verdict.notes


def test_a_candidate_below_a_floor_is_judged_relative_to_a_sound_champion() -> None:
    """Floors judge the first model only: against a sound champion, only the allowances count."""
    champion = Evaluation(_m(0.56, log_loss=0.55))
    verdict = decide(Evaluation(_m(0.548, log_loss=0.552)), champion, GATE)
    assert not verdict.passed and verdict.reasons == ["AUC 0.548 < champion 0.560 - 0.005"]


def test_a_champion_below_the_floors_is_replaced_by_a_better_candidate_with_an_alert() -> None:
    broken = Evaluation(_m(0.338, log_loss=0.9, ece=0.3))
    sane = decide(Evaluation(_m(0.687, log_loss=0.54, ece=0.142)), broken, GATE)
    assert sane.passed and sane.alert is None  # meets the floors: no need for a person
    weak = decide(Evaluation(_m(0.53, log_loss=0.7, ece=0.2)), broken, GATE)
    assert weak.passed and "both below the floors" in weak.alert and "the candidate serves" in weak.alert
    assert weak.figures["auc"] == {"candidate": 0.53, "champion": 0.338}
    worse = decide(Evaluation(_m(0.30, log_loss=0.95)), broken, GATE)
    assert not worse.passed and "the champion keeps serving" in worse.alert
    assert "the champion is the better of the two (AUC 0.338 vs 0.300)" in worse.reasons[0]


def test_one_class_holdout_fails_with_a_reason() -> None:
    verdict = decide(Evaluation(_m(None)), None, GATE)
    assert verdict.reasons[0] == "AUC is undefined: the holdout has one class only"


def test_the_base_rate_predictor_predicts_the_prior_label_rate_on_the_holdout_labels() -> None:
    # Predicting 0.10 on holdout labels whose rate is 0.25 costs more than their entropy.
    shifted = base_rate_log_loss(0.25, 0.10)
    assert shifted == pytest.approx(-(0.25 * math.log(0.10) + 0.75 * math.log(0.90)), abs=1e-9)
    assert shifted > BASE and base_rate_log_loss(0.25, 0.25) == pytest.approx(BASE)
    model = Evaluation(_m(0.70, log_loss=0.60))  # worse than the holdout's entropy, better than the prior
    assert not decide(model, None, GATE).passed
    verdict = decide(model, None, GATE, prior_rate=0.10)
    assert verdict.passed
    assert verdict.figures["log_loss"]["base_rate"] == pytest.approx(shifted)
    assert verdict.figures["positive_rate"]["prior"] == 0.10
    assert any("predicting the prior label rate 0.100" in note for note in verdict.notes)
