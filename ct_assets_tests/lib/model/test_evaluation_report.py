"""The evaluation report: verdict and reasons first, then candidate beside champion, reliability
before and after calibration, and segments, with plots embedded as images."""

from __future__ import annotations

import numpy as np

from ct_assets.lib.model import evaluation_report, gate, metrics
from ct_assets.lib.model.steps import EvaluationResult


def _evaluation(seed: int, segments: list[str]) -> tuple[gate.Evaluation, dict]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 400), 0, 1)
    overall = metrics.compute(y, p, 0.5)
    by_segment = {s: metrics.compute(y[i::2], p[i::2], 0.5) for i, s in enumerate(segments)}
    return gate.Evaluation(overall=overall, segments=by_segment), {"x": metrics.calibration_curve(y, p)}


def test_a_refused_candidate_shows_its_reasons_and_both_models_side_by_side() -> None:
    candidate, curves = _evaluation(1, ["origin=EWR", "origin=JFK"])
    champion, _ = _evaluation(2, ["origin=EWR"])
    uncalibrated, _ = _evaluation(3, [])
    result = EvaluationResult(
        candidate_version="v0002",
        champion_version="v0001",
        candidate=candidate,
        champion=champion,
        verdict=gate.Verdict(False, ["AUC 0.61 is 0.02 below the champion's"], ["log-loss held"]),
        curves={"candidate v0002": curves["x"]},
        notes=["holdout 2013-02-01..2013-02-03"],
        uncalibrated=uncalibrated.overall,
    )
    report = evaluation_report.markdown(result)
    assert report.startswith("## Gate **FAILED**")
    assert "- AUC 0.61 is 0.02 below the champion's" in report
    assert "- log-loss held" in report and "- holdout 2013-02-01..2013-02-03" in report
    assert "| metric | candidate v0002 | champion v0001 |" in report
    assert f"| auc | {candidate.overall.auc:.4f} | {champion.overall.auc:.4f} |" in report
    assert f"| ece | {uncalibrated.overall.ece:.4f} | {candidate.overall.ece:.4f} |" in report
    # a segment the champion has no figure for shows a dash in its column
    jfk = candidate.segments["origin=JFK"]
    assert f"| origin=JFK | {jfk.rows} | {jfk.auc:.4f} | - |" in report
    assert report.count("data:image/png;base64,") == 2


def test_a_first_model_has_no_champion_column_and_says_when_it_carries_no_calibration() -> None:
    candidate, curves = _evaluation(4, ["carrier=UA"])
    result = EvaluationResult(
        candidate_version="v0001",
        champion_version=None,
        candidate=candidate,
        champion=None,
        verdict=gate.Verdict(True, [], ["AUC above the floor"]),
        curves={"candidate v0001": curves["x"]},
        notes=[],
    )
    report = evaluation_report.markdown(result)
    assert report.startswith("## Gate **PASSED**") and "Reasons:\n- none" in report
    assert "| metric | candidate v0001 |\n|---|---|" in report
    assert "champion" not in report.split("## Segments")[0]
    assert "The candidate carries no calibration." in report
