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


def test_the_compared_figures_are_held_to_the_confidence_together() -> None:
    breaches = [gate._Breach("log-loss", 0.98), gate._Breach("AUC on segment s", 0.995)]
    reasons, notes = gate._shown(breaches, compared=3)  # needs 98.3 %, then 97.5 %
    assert [r.split(" (")[0] for r in reasons] == ["AUC on segment s", "log-loss"] and not notes
    reasons, notes = gate._shown(breaches, compared=40)  # needs 99.875 %: neither is shown
    assert not reasons and len(notes) == 2 and "40 figures compared" in notes[0]
    reasons, _ = gate._shown([gate._Breach("AUC", 1.0), gate._Breach("ECE", 0.99)], compared=40)
    assert len(reasons) == 1 and reasons[0].startswith("AUC (the candidate is worse on 100.0%")
    assert gate._shown([gate._Breach("AUC", None)], compared=40) == (["AUC"], [])  # no paired scores


def test_an_equally_good_candidate_with_many_segments_passes_and_a_worse_one_does_not() -> None:
    y, risk = _world()
    frame = pd.DataFrame({"carrier": [f"c{i % 6}" for i in range(ROWS)]})  # six segments of 250 rows
    rules = GateSpec(**{name: 0.0 for name in GateSpec.model_fields if name.endswith("_regression")})

    def verdict(candidate: np.ndarray, champion: np.ndarray) -> gate.Verdict:
        def evaluation(p: np.ndarray) -> gate.Evaluation:
            return gate.Evaluation(
                metrics.compute(y, p, 0.5), metrics.by_segment(frame, y, p, ["carrier"], 0.5, 30)
            )

        paired = paired_scores(frame, y, candidate, champion, ["carrier"])
        return gate.decide(evaluation(candidate), evaluation(champion), rules, paired=paired)

    refused = [
        not verdict(_noisy(risk, 0.05, 2 * s + 1), _noisy(risk, 0.05, 2 * s)).passed for s in range(10)
    ]
    assert sum(refused) <= 1, "two draws of the same model: 21 figures each, held to 95 % together"
    worse = verdict(_noisy(risk, 0.3, 1), _noisy(risk, 0.05, 0))
    assert not worse.passed and worse.reasons[0].split(" ")[0] in {"AUC", "log-loss", "calibration"}
