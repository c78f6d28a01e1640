"""Drift of a partition's profile against a reference profile, per feature, with thresholds
calibrated on the reference window's own partition-to-partition variation.

Distances come from the whylogs sketches: Hellinger distance on binned numeric values (bins from
the reference's deciles) and on category frequencies; the KS statistic (numeric) and chi-square
statistic (categorical) with p-values come from whylogs' drift algorithms. On large partitions
every p-value says "drift", so the decision uses the Hellinger distance against a threshold
learned from how much the reference window's own partitions differ from it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import median
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

QUANTILES = [i / 10 for i in range(1, 10)]


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "numeric" | "categorical"
    rows: int
    hellinger: float | None
    statistic: float | None
    pvalue: float | None
    null_rate: float
    reference_null_rate: float
    new_values: list[str]
    skipped: str | None = None  # why no distance was computed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(view: DatasetProfileView, column: str) -> tuple[int, int]:
    counts = view.get_column(column).get_metric("counts")
    return int(counts.n.value), int(counts.null.value)


def _hellinger(p: list[float], q: list[float]) -> float:
    total_p, total_q = sum(p), sum(q)
    if total_p <= 0 or total_q <= 0:
        return 0.0
    overlap = sum(math.sqrt((a / total_p) * (b / total_q)) for a, b in zip(p, q, strict=True))
    return math.sqrt(max(0.0, 1.0 - overlap))


def _numeric_histograms(
    reference: DatasetProfileView, target: DatasetProfileView, column: str
) -> tuple[list[float], list[float]] | None:
    ref = reference.get_column(column).get_metric("distribution")
    tgt = target.get_column(column).get_metric("distribution")
    if ref is None or tgt is None or ref.kll.value.is_empty() or tgt.kll.value.is_empty():
        return None
    splits = sorted(set(ref.kll.value.get_quantiles(QUANTILES)))
    return list(ref.kll.value.get_pmf(splits)), list(tgt.kll.value.get_pmf(splits))


def _frequencies(view: DatasetProfileView, column: str) -> dict[str, float]:
    metric = view.get_column(column).get_metric("frequent_items")
    if metric is None:
        return {}
    return {str(item.value): float(item.est) for item in metric.strings}


def _whylogs_tests(reference: DatasetProfileView, target: DatasetProfileView) -> dict[str, dict[str, Any]]:
    """whylogs' KS (numeric) and chi-square (categorical) statistics and p-values, per column."""
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores

    try:
        return calculate_drift_scores(target_view=target, reference_view=reference, with_thresholds=False)
    except Exception:
        return {}


def column_drift(
    reference: DatasetProfileView,
    target: DatasetProfileView,
    column: str,
    kind: str,
    min_rows: int,
    test: dict[str, Any] | None = None,
) -> ColumnDrift:
    """Distance of one column of `target` from `reference`, or a reason it was skipped."""
    rows, nulls = _counts(target, column)
    ref_rows, ref_nulls = _counts(reference, column)
    null_rate = nulls / rows if rows else 0.0
    ref_null_rate = ref_nulls / ref_rows if ref_rows else 0.0
    base = {
        "column": column,
        "kind": kind,
        "rows": rows,
        "null_rate": null_rate,
        "reference_null_rate": ref_null_rate,
    }
    if rows < min_rows:
        return ColumnDrift(
            **base,
            hellinger=None,
            statistic=None,
            pvalue=None,
            new_values=[],
            skipped=f"only {rows} rows (< {min_rows}): too few to judge",
        )
    if rows == nulls:
        return ColumnDrift(
            **base,
            hellinger=None,
            statistic=None,
            pvalue=None,
            new_values=[],
            skipped="every value is null in the partition",
        )
    if ref_rows == ref_nulls:
        return ColumnDrift(
            **base,
            hellinger=None,
            statistic=None,
            pvalue=None,
            new_values=[],
            skipped="every value is null in the reference",
        )
    new_values: list[str] = []
    if kind == "numeric":
        histograms = _numeric_histograms(reference, target, column)
        distance = _hellinger(*histograms) if histograms else None
    else:
        ref_freq, tgt_freq = _frequencies(reference, column), _frequencies(target, column)
        values = sorted(set(ref_freq) | set(tgt_freq))
        new_values = [v for v in values if v not in ref_freq][:20]
        distance = _hellinger([ref_freq.get(v, 0.0) for v in values], [tgt_freq.get(v, 0.0) for v in values])
    test = test or {}
    return ColumnDrift(
        **base,
        hellinger=distance,
        statistic=test.get("statistic"),
        pvalue=test.get("pvalue"),
        new_values=new_values,
    )


def partition_drift(
    reference: DatasetProfileView,
    target: DatasetProfileView,
    kinds: dict[str, str],
    min_rows: int,
    with_tests: bool = True,
) -> dict[str, ColumnDrift]:
    """Every feature's drift; `with_tests` adds whylogs' KS / chi-square statistics and p-values."""
    tests = _whylogs_tests(reference, target) if with_tests else {}
    return {
        column: column_drift(reference, target, column, kind, min_rows, tests.get(column))
        for column, kind in kinds.items()
    }


def calibrate_thresholds(
    reference: DatasetProfileView,
    partitions: list[DatasetProfileView],
    kinds: dict[str, str],
    k: float,
    floor: float,
    min_rows: int,
) -> dict[str, float]:
    """Per feature, median + k * MAD of the reference window's own partitions' distances to it.

    A normal weekday swing inside the window sets the bar, so it does not alarm later; `floor`
    keeps a near-constant feature from alarming on noise.
    """
    distances: dict[str, list[float]] = {column: [] for column in kinds}
    for view in partitions:
        for column, result in partition_drift(reference, view, kinds, min_rows, with_tests=False).items():
            if result.hellinger is not None:
                distances[column].append(result.hellinger)
    thresholds = {}
    for column, values in distances.items():
        if not values:
            thresholds[column] = floor
            continue
        center = median(values)
        spread = median(abs(v - center) for v in values)
        thresholds[column] = max(floor, center + k * max(spread, 0.25 * center), max(values))
    return thresholds
