"""The evaluation gate: a candidate is judged against the champion re-scored on the same holdout.

With a champion, the candidate passes when it is not worse than the champion beyond the spec's
allowances on AUC, log-loss and calibration error (ECE), overall and on every segment large
enough to judge. Given both models' scores on the holdout rows (`PairedScores`), a figure beyond
its allowance counts against the candidate only when the candidate is the worse model on enough
paired resamples of those rows: `paired_evidence.CONFIDENCE` holds for all the compared figures
together (Holm's step-down over them, `_shown`), since one verdict compares three figures overall
and three on every segment. Otherwise the candidate is not shown worse (the row-sampling noise of
the holdout could give that difference), and the verdict notes the figure with its evidence.

The absolute floors (AUC at least `min_auc`; log-loss below the base-rate predictor's, plus
`log_loss_floor_margin`) judge the first model only, and decide between the two models when the
champion itself has fallen below them: a candidate that meets the floors then replaces it, and
when both miss them the better one serves (higher AUC, then lower log-loss) and the verdict
carries an alert. Every verdict lists both models' figures side by side.

The base-rate predictor is the constant model that could have been served instead: it predicts
the label rate of the labelled rows before the holdout (training and validation) for every
holdout row. Its log-loss is measured on the holdout's labels, so it equals the labels' entropy
when the rate holds and grows when the rate shifts; a rate read off the holdout itself would be
a constant no one could have served.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ct_assets.lib.core.spec import GateSpec
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.model.paired_evidence import CONFIDENCE, RESAMPLES, PairedScores, worse_share

JUDGED = ("auc", "log_loss", "ece")  # the figures the gate compares; AUC is the only higher-is-better


@dataclass(frozen=True)
class Evaluation:
    """One model's metrics on a holdout: overall and per segment value."""

    overall: Metrics
    segments: dict[str, Metrics] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: list[str]  # why it failed; empty when it passed
    notes: list[str]  # what was checked and held
    figures: dict[str, dict[str, float | None]] = field(default_factory=dict)  # metric -> model -> value
    alert: str | None = None  # set when the verdict needs a person (both models below the floors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "notes": self.notes,
            "figures": self.figures,
            "alert": self.alert,
        }


def base_rate_log_loss(positive_rate: float, predicted_rate: float | None = None) -> float:
    """Log-loss on labels whose rate is `positive_rate` of predicting `predicted_rate` for every
    row; by default the labels' own rate, which gives their entropy."""
    h = min(max(positive_rate, 0.0), 1.0)
    p = min(max(positive_rate if predicted_rate is None else predicted_rate, 1e-7), 1 - 1e-7)
    return -(h * math.log(p) + (1 - h) * math.log(1 - p))


def floor_misses(
    metrics: Metrics, gate: GateSpec, prior_rate: float | None = None
) -> tuple[list[str], list[str]]:
    """The absolute floors a model misses, and those it meets, in words; `prior_rate` is the label
    rate the base-rate predictor predicts (the holdout's own when None)."""
    misses, holds = [], []
    if metrics.auc is None:
        misses.append("AUC is undefined: the holdout has one class only")
    elif metrics.auc < gate.min_auc:
        misses.append(f"AUC {metrics.auc:.3f} < floor {gate.min_auc:.3f}")
    else:
        holds.append(f"AUC {metrics.auc:.3f} >= floor {gate.min_auc:.3f}")
    base = base_rate_log_loss(metrics.positive_rate, prior_rate)
    margin = f" + {gate.log_loss_floor_margin:.3f}" if gate.log_loss_floor_margin else ""
    if prior_rate is not None:
        margin += (
            f" (predicting the prior label rate {prior_rate:.3f}; holdout's {metrics.positive_rate:.3f})"
        )
    if metrics.log_loss >= base + gate.log_loss_floor_margin:
        misses.append(f"log-loss {metrics.log_loss:.3f} >= base-rate predictor's {base:.3f}{margin}")
    else:
        holds.append(f"log-loss {metrics.log_loss:.3f} < base-rate predictor's {base:.3f}{margin}")
    return misses, holds


def _figures(
    candidate: Metrics, champion: Metrics | None, prior_rate: float | None
) -> dict[str, dict[str, float | None]]:
    base = base_rate_log_loss(candidate.positive_rate, prior_rate)
    table: dict[str, dict[str, float | None]] = {}
    for name in (*JUDGED, "brier", "f1", "rows", "positive_rate"):
        table[name] = {"candidate": getattr(candidate, name)}
        if champion is not None:
            table[name]["champion"] = getattr(champion, name)
    table["log_loss"]["base_rate"] = base
    if prior_rate is not None:
        table["positive_rate"]["prior"] = prior_rate
    return table


@dataclass(frozen=True)
class _Breach:
    """A judged figure on which the candidate is worse than the champion beyond its allowance."""

    text: str
    share: float | None  # share of paired resamples with the candidate worse; None without them


def _breaches(
    ours: Metrics, theirs: Metrics, allowed: dict[str, float], where: str, paired: PairedScores | None
) -> tuple[list[_Breach], int]:
    """Each judged figure on which `ours` is worse than `theirs` by more than its allowance, with its
    paired evidence, and how many figures were compared (both defined)."""
    found, compared = [], 0
    for name, label in (("auc", "AUC"), ("log_loss", "log-loss"), ("ece", "calibration error")):
        mine, champ = getattr(ours, name), getattr(theirs, name)
        if mine is None or champ is None:
            continue
        compared += 1
        if name == "auc" and mine < champ - allowed[name]:
            text = f"{label} {mine:.3f} < champion {champ:.3f} - {allowed[name]:.3f}{where}"
        elif name != "auc" and mine > champ + allowed[name]:
            text = f"{label} {mine:.3f} > champion {champ:.3f} + {allowed[name]:.3f}{where}"
        else:
            continue
        found.append(_Breach(text, None if paired is None else worse_share(paired, name)))
    return found, compared


def _shown(breaches: list[_Breach], compared: int) -> tuple[list[str], list[str]]:
    """The breaches that count against the candidate (reasons) and those noted as not shown.

    Without paired scores every breach counts. With them, the family of all `compared` figures is
    held to CONFIDENCE together by Holm's step-down: the breaches in order of their evidence, the
    k-th (from 0) counts when the candidate is worse on at least `1 - (1 - CONFIDENCE) / (compared
    - k)` of the resamples, and the first that falls short ends the counting. Judging some forty
    figures (three per segment) each at CONFIDENCE alone would refuse a candidate no worse than
    the champion most of the time."""
    reasons, notes = [], []
    ordered = sorted(breaches, key=lambda b: -(b.share if b.share is not None else 2.0))
    shown = True
    for rank, breach in enumerate(ordered):
        if breach.share is None:
            reasons.append(breach.text)
            continue
        needed = 1 - (1 - CONFIDENCE) / max(compared - rank, 1)
        evidence = (
            f"the candidate is worse on {breach.share:.1%} of {RESAMPLES} paired resamples of the holdout "
            f"rows; {compared} figures compared, this one needs {needed:.2%}"
        )
        shown = shown and breach.share >= needed
        if shown:
            reasons.append(f"{breach.text} ({evidence})")
        else:
            notes.append(f"{breach.text}: not shown worse ({evidence})")
    return reasons, notes


def _better(candidate: Metrics, champion: Metrics) -> bool:
    """Is the candidate the better of two models: higher AUC, or equal AUC and lower log-loss?"""
    ours, theirs = candidate.auc or 0.0, champion.auc or 0.0
    if ours != theirs:
        return ours > theirs
    return candidate.log_loss < champion.log_loss


def _against_a_failed_champion(
    candidate: Metrics,
    champion: Metrics,
    champion_misses: list[str],
    gate: GateSpec,
    prior_rate: float | None,
) -> Verdict:
    figures = _figures(candidate, champion, prior_rate)
    fallen = f"the champion is below the floors ({'; '.join(champion_misses)})"
    misses, holds = floor_misses(candidate, gate, prior_rate)
    if not misses:
        return Verdict(
            True, [], [fallen, *holds, "the candidate meets the floors: it replaces the champion"], figures
        )
    both = f"candidate and champion are both below the floors (candidate: {'; '.join(misses)}; {fallen})"
    if _better(candidate, champion):
        note = (
            f"the candidate is the better of the two (AUC {_auc(candidate)} vs {_auc(champion)}): it serves"
        )
        return Verdict(True, [], [both, note], figures, alert=f"{both}; the candidate serves")
    reason = f"{both}; the champion is the better of the two (AUC {_auc(champion)} vs {_auc(candidate)})"
    return Verdict(False, [reason], [], figures, alert=f"{both}; the champion keeps serving")


def _auc(metrics: Metrics) -> str:
    return "undefined" if metrics.auc is None else f"{metrics.auc:.3f}"


def decide(
    candidate: Evaluation,
    champion: Evaluation | None,
    gate: GateSpec,
    prior_rate: float | None = None,
    paired: PairedScores | None = None,
) -> Verdict:
    """The verdict on a candidate, against the champion on the same holdout when there is one;
    `prior_rate` is the label rate of the rows before the holdout, `paired` both models' scores on
    its rows (see the module)."""
    ours = candidate.overall
    if champion is None:
        misses, holds = floor_misses(ours, gate, prior_rate)
        notes = [*holds, "no champion yet: the floors judge the first model"]
        return Verdict(not misses, misses, notes, _figures(ours, None, prior_rate))
    champion_misses, _ = floor_misses(champion.overall, gate, prior_rate)
    if champion_misses:
        return _against_a_failed_champion(ours, champion.overall, champion_misses, gate, prior_rate)
    overall = {
        "auc": gate.max_auc_regression,
        "log_loss": gate.max_log_loss_regression,
        "ece": gate.max_calibration_regression,
    }
    per_segment = {
        "auc": gate.max_segment_auc_regression,
        "log_loss": gate.max_segment_log_loss_regression,
        "ece": gate.max_segment_calibration_regression,
    }
    breaches, compared = _breaches(ours, champion.overall, overall, "", paired)
    judged = 0
    for segment, metrics in candidate.segments.items():
        theirs = champion.segments.get(segment)
        if theirs is None or metrics.rows < gate.min_segment_rows:
            continue
        judged += 1
        rows = paired.segment(segment) if paired else None
        found, count = _breaches(metrics, theirs, per_segment, f" on segment {segment}", rows)
        breaches += found
        compared += count
    reasons, notes = _shown(breaches, compared)
    if not breaches:
        notes.append(
            f"not worse than the champion beyond the allowances (AUC {overall['auc']:.3f}, "
            f"log-loss {overall['log_loss']:.3f}, calibration error {overall['ece']:.3f})"
        )
    notes.append(f"{judged} segments with at least {gate.min_segment_rows} rows compared with the champion")
    return Verdict(not reasons, reasons, notes, _figures(ours, champion.overall, prior_rate))
