"""How monitoring reads in the UI: Markdown tables for the per-partition live performance and
drift metadata, and the monitoring dashboard asset with the sensor that refreshes it whenever a
partition's live performance or drift is materialized."""

from typing import Any

import dagster as dg

from ct_assets.defs.resources import WAREHOUSE_POOL, Warehouse
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import table_exists
from ct_assets.lib.model import report_plots
from ct_assets.lib.monitor import dashboards


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats to three decimals, lists comma-separated."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def live_table(summary: dict[str, Any]) -> dg.MetadataValue:
    """live_performance's metadata: one row per partition."""
    rows = [
        [key, r["model"], r["auc"], r["log_loss"], r["ece"], r["rows"]]
        if isinstance(r, dict)
        else [key, r, None, None, None, None]
        for key, r in summary.items()
    ]
    return dg.MetadataValue.md(markdown_table(["partition", "model", "AUC", "log-loss", "ECE", "rows"], rows))


def drift_table(found: dict[str, Any]) -> dg.MetadataValue:
    """drift's metadata: one row per partition, the drifted features and the share of the
    champion's importance they carry."""
    rows = []
    for key, r in found.items():
        if not isinstance(r, dict):
            rows.append([key, "-", None, r, None, None, None])
            continue
        rows.append(
            [
                key,
                r["against"],
                r["share"],
                sorted(r["drifted"]) if r["drifted"] else "none",
                r["label_rate"],
                r["reference_label_rate"],
                r["prediction_hellinger"],
            ]
        )
    headers = [
        "partition",
        "against",
        "importance share drifted",
        "drifted features",
        "label rate",
        "reference label rate",
        "prediction Hellinger",
    ]
    return dg.MetadataValue.md(markdown_table(headers, rows))


def dashboard_sensor_name(pipeline: str) -> str:
    return f"{pipeline}_dashboard_automation"


def monitoring_dashboard_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    live_key, drift_key = asset_key(spec, "live_performance"), asset_key(spec, "drift")

    @dg.asset(
        key=asset_key(spec, "monitoring_dashboard"),
        group_name=spec.name,
        deps=[live_key, drift_key],
        pool=WAREHOUSE_POOL,
        kinds={"matplotlib"},
        # refreshed after each ingest: once a partition's drift lands and nothing upstream still runs
        automation_condition=dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress(),
        description="Per-segment live AUC and per-feature drift over time, as pictures; refreshed "
        "after each ingest.",
    )
    def monitoring_dashboard(warehouse: Warehouse) -> dg.MaterializeResult:

        with warehouse.connect() as con:
            ready = all(table_exists(con, spec.name, t) for t in ("live_performance", "drift_columns"))
            live = con.execute(f"SELECT * FROM {spec.name}.live_performance").df() if ready else None
            columns = (
                con.execute(
                    f"SELECT _partition_key AS partition, * EXCLUDE (_partition_key) "
                    f"FROM {spec.name}.drift_columns"
                ).df()
                if ready
                else None
            )
        if live is None or columns is None or live.empty:
            return dg.MaterializeResult(
                metadata={
                    "partitions": 0,
                    "note": dg.MetadataValue.md("no champion has been scored live yet"),
                }
            )
        live = live.rename(columns={"_partition_key": "partition_key"})
        return dg.MaterializeResult(
            metadata={
                "segments": dg.MetadataValue.md(
                    report_plots.markdown_image(dashboards.segment_auc_over_time(live), "segment AUC")
                ),
                "drift": dg.MetadataValue.md(
                    report_plots.markdown_image(
                        dashboards.drift_heatmap(columns.dropna(subset=["hellinger"])), "drift heatmap"
                    )
                ),
                "partitions": int(live["partition_key"].nunique()),
            }
        )

    return monitoring_dashboard


def dashboard_sensor(spec: PipelineSpec) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        dashboard_sensor_name(spec.name),
        target=dg.AssetSelection.assets(asset_key(spec, "monitoring_dashboard")),
        minimum_interval_seconds=30,
        description="Refreshes the monitoring dashboard after each ingest (its automation condition).",
    )
