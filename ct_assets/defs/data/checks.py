"""The validated asset's check results: rows conserved, quarantine rate, outliers."""

from collections.abc import Iterator

import dagster as dg

from ct_assets.defs.data.common import WARN
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.quality import MIN_HISTORY


def validation_checks(
    spec: PipelineSpec, key: dg.AssetKey, reports: dict[str, data_steps.ValidationReport]
) -> Iterator[dg.AssetCheckResult]:
    unconserved = {k: r for k, r in reports.items() if not r.conserved}
    yield dg.AssetCheckResult(
        check_name="rows_conserved",
        asset_key=key,
        passed=not unconserved,
        description="every row is either valid or quarantined"
        if not unconserved
        else "rows lost in "
        + ", ".join(
            f"{k} (in {r.rows_in}, valid {r.rows_in_validated_table}, quarantined "
            f"{r.rows_in_quarantine_table})"
            for k, r in unconserved.items()
        ),
        metadata={
            "rows_in": sum(r.rows_in for r in reports.values()),
            "rows_valid": sum(r.rows_in_validated_table for r in reports.values()),
            "rows_quarantined": sum(r.rows_in_quarantine_table for r in reports.values()),
        },
    )
    threshold = spec.quality.max_quarantine_rate
    over = {k: r.quarantine_rate for k, r in reports.items() if r.quarantine_rate > threshold}
    worst = max((r.quarantine_rate for r in reports.values()), default=0.0)
    yield dg.AssetCheckResult(
        check_name="quarantine_rate",
        asset_key=key,
        passed=not over,
        description=(
            f"quarantine rate at most {worst:.2%} (limit {threshold:.2%})"
            if not over
            else "quarantine rate over the limit of "
            + f"{threshold:.2%}: "
            + ", ".join(f"{k} {rate:.2%}" for k, rate in over.items())
        ),
        metadata={"max_quarantine_rate": worst, "limit": threshold},
    )
    limit = spec.quality.max_outlier_rate
    flagged: dict[str, dict[str, int]] = {}
    for partition_key, report in reports.items():
        for column, count in report.outliers.items():
            if report.rows_valid and count / report.rows_valid > limit:
                flagged.setdefault(partition_key, {})[column] = count
    history = min((r.outlier_history for r in reports.values()), default=0)
    yield dg.AssetCheckResult(
        check_name="outliers",
        asset_key=key,
        passed=not flagged,
        severity=WARN,
        description=(
            f"only {history} earlier partition(s): too few to learn bounds from"
            if history < MIN_HISTORY and not flagged
            else "outlier rates within limits"
            if not flagged
            else "outliers above "
            + f"{limit:.1%}: "
            + "; ".join(f"{k}: {cols}" for k, cols in flagged.items())
        ),
        metadata={
            "history_partitions": history,
            "outliers": dg.MetadataValue.json({k: r.outliers for k, r in reports.items()}),
        },
    )
