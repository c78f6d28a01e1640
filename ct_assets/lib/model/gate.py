"""The evaluation gate: absolute minimums, and no regression against the champion overall or on
any segment large enough to judge, with reasons a person can read."""

from __future__ import annotations

from dataclasses import dataclass, field

from ct_assets.lib.core.spec import GateSpec
from ct_assets.lib.model.metrics import Metrics


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

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "reasons": self.reasons, "notes": self.notes}


def _absolute(candidate: Metrics, gate: GateSpec) -> tuple[list[str], list[str]]:
    reasons, notes = [], []
    if candidate.auc is None:
        reasons.append("AUC is undefined: the holdout has one class only")
    elif candidate.auc < gate.min_auc:
        reasons.append(f"AUC {candidate.auc:.3f} < minimum {gate.min_auc:.3f}")
    else:
        notes.append(f"AUC {candidate.auc:.3f} >= minimum {gate.min_auc:.3f}")
    if candidate.log_loss > gate.max_log_loss:
        reasons.append(f"log-loss {candidate.log_loss:.3f} > maximum {gate.max_log_loss:.3f}")
    else:
        notes.append(f"log-loss {candidate.log_loss:.3f} <= maximum {gate.max_log_loss:.3f}")
    if candidate.ece > gate.max_calibration_error:
        reasons.append(f"calibration error {candidate.ece:.3f} > maximum {gate.max_calibration_error:.3f}")
    else:
        notes.append(f"calibration error {candidate.ece:.3f} <= maximum {gate.max_calibration_error:.3f}")
    return reasons, notes


def _regression(candidate: Metrics, champion: Metrics, allowed: float, where: str) -> str | None:
    if candidate.auc is None or champion.auc is None:
        return None
    if candidate.auc < champion.auc - allowed:
        return f"AUC {candidate.auc:.3f} < champion {champion.auc:.3f} - {allowed:.3f}{where}"
    return None


def decide(candidate: Evaluation, champion: Evaluation | None, gate: GateSpec) -> Verdict:
    """Pass only if every absolute criterion holds and nothing regresses beyond the allowance.

    The first model of a pipeline (no champion) faces the absolute criteria only.
    """
    reasons, notes = _absolute(candidate.overall, gate)
    if champion is None:
        notes.append("no champion yet: absolute criteria only")
        return Verdict(not reasons, reasons, notes)
    allowed = gate.max_auc_regression
    overall = _regression(candidate.overall, champion.overall, allowed, "")
    if overall:
        reasons.append(overall)
    else:
        notes.append(f"overall AUC within {allowed:.3f} of the champion or better")
    judged = 0
    for segment, metrics in candidate.segments.items():
        theirs = champion.segments.get(segment)
        if theirs is None or metrics.rows < gate.min_segment_rows:
            continue
        judged += 1
        problem = _regression(metrics, theirs, gate.max_segment_auc_regression, f" on segment {segment}")
        if problem:
            reasons.append(problem)
    notes.append(f"{judged} segments with at least {gate.min_segment_rows} rows compared with the champion")
    return Verdict(not reasons, reasons, notes)
