"""The paired bootstrap on the same holdout rows: a model that is worse on nearly every resample is
shown worse; two draws of the same model, or a difference of the size day-to-day noise makes, are
not; the gate counts only a shown regression against the candidate, and notes the rest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.core.spec import GateSpec
from ct_assets.lib.model import gate, metrics
from ct_assets.lib.model.paired_evidence import (
    CONFIDENCE,
    PairedScores,
    figure,
    paired_scores,
    worse_share,
)

ROWS = 1500


def _world(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a known risk, and that risk (the best scores one can have)."""
    generator = np.random.default_rng(seed)
    risk = generator.uniform(0.05, 0.6, ROWS)
    return (generator.uniform(0, 1, ROWS) < risk).astype(int), risk


def _noisy(risk: np.ndarray, spread: float, seed: int) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return np.clip(risk + generator.normal(0, spread, len(risk)), 0.001, 0.999)


def test_a_clearly_worse_model_is_worse_on_nearly_every_resample() -> None:
    y, risk = _world()
    paired = PairedScores(y, _noisy(risk, 0.3, 1), risk)
    assert worse_share(paired, "auc") >= CONFIDENCE
    assert worse_share(paired, "log_loss") >= CONFIDENCE


def test_two_equally_good_models_are_not_shown_worse_and_the_share_is_repeatable() -> None:
    y, risk = _world()
    paired = PairedScores(y, _noisy(risk, 0.05, 1), _noisy(risk, 0.05, 2))
    share = worse_share(paired, "auc")
    assert 0.05 < share < CONFIDENCE and worse_share(paired, "auc") == share


def test_figures_match_the_evaluation_s() -> None:
    y, risk = _world()
    computed = metrics.compute(y, risk, 0.5)
    assert figure("auc", y, risk) == pytest.approx(computed.auc)
    assert figure("log_loss", y, risk) == pytest.approx(computed.log_loss)
    assert figure("ece", y, risk) == pytest.approx(computed.ece)
    tied = np.round(risk, 1)  # many ties: each shares its average rank, as scikit-learn counts them
    assert figure("auc", y, tied) == pytest.approx(metrics.compute(y, tied, 0.5).auc, abs=1e-12)
    assert figure("auc", np.zeros(5, dtype=int), risk[:5]) is None
    with pytest.raises(ValueError, match="no paired figure 'f1'"):
        figure("f1", y, risk)


def test_segments_are_named_as_the_evaluation_names_them() -> None:
    y, risk = _world()
    frame = pd.DataFrame({"origin": np.where(np.arange(ROWS) % 3 == 0, "EWR", "JFK")})
    paired = paired_scores(frame, y, risk, risk, ["origin"])
    assert sorted(paired.segments) == ["origin=EWR", "origin=JFK"]
    ewr = paired.segment("origin=EWR")
    assert ewr is not None and len(ewr.labels) == 500 and paired.segment("origin=LGA") is None


def _evaluation(y: np.ndarray, p: np.ndarray) -> gate.Evaluation:
    return gate.Evaluation(metrics.compute(y, p, 0.5))


def test_the_gate_notes_a_regression_within_noise_and_refuses_a_shown_one() -> None:
    y, risk = _world()
    champion = _noisy(risk, 0.05, 2)
    rules = GateSpec(max_auc_regression=0.0, max_log_loss_regression=0.0, max_calibration_regression=0.0)
    close = _noisy(risk, 0.05, 1)
    ours, theirs = _evaluation(y, close), _evaluation(y, champion)
    assert not gate.decide(ours, theirs, rules).passed, "without the paired scores every breach counts"
    verdict = gate.decide(ours, theirs, rules, paired=PairedScores(y, close, champion))
    assert verdict.passed and any("not shown worse" in note for note in verdict.notes), verdict
    bad = _noisy(risk, 0.3, 1)
    refused = gate.decide(_evaluation(y, bad), theirs, rules, paired=PairedScores(y, bad, champion))
    assert not refused.passed and refused.reasons[0].startswith("AUC ")
    assert "paired resamples of the holdout rows" in refused.reasons[0]
