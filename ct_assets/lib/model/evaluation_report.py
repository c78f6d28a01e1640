"""The evaluation's report, as Markdown for the Dagster UI: the gate's verdict with its reasons and
checks, the holdout metrics of candidate and champion side by side, reliability before and after
calibration, and AUC per segment, each with its plot."""

from __future__ import annotations

from ct_assets.lib.model import report_plots
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.model.steps import EvaluationResult


def _metrics_table(result: EvaluationResult) -> str:
    names = ["auc", "f1", "log_loss", "brier", "ece", "rows", "positive_rate"]
    header = "| metric | candidate " + result.candidate_version + " |"
    divider = "|---|---|"
    if result.champion:
        header += f" champion {result.champion_version} |"
        divider += "---|"
    lines = [header, divider]
    for name in names:
        row = f"| {name} | {_fmt(getattr(result.candidate.overall, name))} |"
        if result.champion:
            row += f" {_fmt(getattr(result.champion.overall, name))} |"
        lines.append(row)
    return "\n".join(lines)


def _segment_table(result: EvaluationResult) -> str:
    lines = ["| segment | rows | candidate AUC | champion AUC |", "|---|---|---|---|"]
    for segment, ours in result.candidate.segments.items():
        theirs: Metrics | None = result.champion.segments.get(segment) if result.champion else None
        lines.append(
            f"| {segment} | {ours.rows} | {_fmt(ours.auc)} | {_fmt(theirs.auc if theirs else None)} |"
        )
    return "\n".join(lines)


def _calibration_table(result: EvaluationResult) -> str:
    """The candidate's holdout log-loss, Brier score and calibration error before and after Platt
    scaling on the validation split."""
    before, after = result.uncalibrated, result.candidate.overall
    if before is None:
        return "The candidate carries no calibration."
    lines = ["| metric | before calibration | calibrated |", "|---|---|---|"]
    lines += [
        f"| {n} | {_fmt(getattr(before, n))} | {_fmt(getattr(after, n))} |"
        for n in ("log_loss", "brier", "ece")
    ]
    return "\n".join(lines)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(result: EvaluationResult) -> str:
    """The report: the gate's verdict and reasons, then holdout metrics, reliability and segments
    with their plots, candidate beside champion."""
    verdict = result.verdict
    status = "**PASSED**" if verdict.passed else "**FAILED**"
    reasons = "\n".join(f"- {r}" for r in verdict.reasons) or "- none"
    notes = "\n".join(f"- {n}" for n in [*verdict.notes, *result.notes])
    segments = list(result.candidate.segments)
    series = {f"candidate {result.candidate_version}": [result.candidate.segments[s].auc for s in segments]}
    if result.champion:
        series[f"champion {result.champion_version}"] = [
            result.champion.segments[s].auc if s in result.champion.segments else None for s in segments
        ]
    return "\n\n".join(
        [
            f"## Gate {status}",
            f"Reasons:\n{reasons}",
            f"Checked:\n{notes}",
            "## Metrics (holdout)",
            _metrics_table(result),
            "## Reliability (holdout)",
            report_plots.markdown_image(report_plots.calibration_png(result.curves), "calibration"),
            _calibration_table(result),
            "## Segments",
            report_plots.markdown_image(report_plots.segment_auc_png(segments, series), "segments"),
            _segment_table(result),
        ]
    )
