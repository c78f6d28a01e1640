"""One pipeline's monitoring assets: profile, live_performance and drift per partition, and a
segment dashboard."""

from typing import Any

import dagster as dg

from ct_assets.defs.data.common import INGEST_TAGS, partitions_def
from ct_assets.defs.monitor.dashboards import drift_table, live_table, monitoring_dashboard_asset
from ct_assets.defs.resources import WAREHOUSE_POOL, AlertSink, ModelRegistry, ProfileStore, Warehouse
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.monitor import steps as monitor_steps


def monitor_assets(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    partitions = partitions_def(spec)
    profile_key, drift_key = asset_key(spec, "profile"), asset_key(spec, "drift")
    live_key, champion_key = asset_key(spec, "live_performance"), asset_key(spec, "champion")

    @dg.asset(
        key=profile_key,
        group_name=spec.name,
        deps=[asset_key(spec, "features")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"whylogs"},
        description="whylogs profile of the partition's features, kept in the profile store; "
        "partition profiles merge into a model's reference window.",
    )
    def profile(
        context: dg.AssetExecutionContext, warehouse: Warehouse, profiles: ProfileStore
    ) -> dg.MaterializeResult:
        store = profiles.for_pipeline(spec.name)
        with warehouse.connect() as con:
            rows = {k: monitor_steps.profile_step(con, spec, k, store) for k in context.partition_keys}
        return dg.MaterializeResult(
            metadata={"dagster/row_count": sum(rows.values()), "profiles": dg.MetadataValue.json(rows)}
        )

    @dg.asset(
        key=live_key,
        group_name=spec.name,
        deps=[asset_key(spec, "features"), champion_key, asset_key(spec, "predictions")],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"catboost"},
        description="The serving model's AUC, log-loss and calibration on the partition, overall "
        "and per segment. Until serving logs exist, the champion scores the partition.",
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        registry: ModelRegistry,
        profiles: ProfileStore,
        alerts: AlertSink,
    ) -> dg.MaterializeResult:
        summary: dict[str, Any] = {}
        raised = []
        with warehouse.connect() as con:
            for key in context.partition_keys:
                report = monitor_steps.live_performance_step(
                    con, spec, key, registry.for_pipeline(spec.name), profiles.for_pipeline(spec.name)
                )
                if report is None:
                    summary[key] = "no champion yet"
                    continue
                auc = report.evaluation.overall.auc
                summary[key] = {
                    "model": report.model_version,
                    "auc": auc,
                    "log_loss": report.evaluation.overall.log_loss,
                    "ece": report.evaluation.overall.ece,
                    "rows": report.evaluation.overall.rows,
                }
                if auc is not None and auc < spec.monitoring.performance_floor_auc:
                    raised.append(
                        str(
                            alerts.notify(
                                spec,
                                "critical",
                                key,
                                f"live AUC {auc:.3f} of {report.model_version} is below the floor "
                                f"{spec.monitoring.performance_floor_auc:.3f}",
                                "check the performance sensor's retrain run and the data",
                            )
                        )
                    )
        return dg.MaterializeResult(
            metadata={
                "live": live_table(summary),
                "alerts": dg.MetadataValue.md("\n".join(raised) or "none"),
            }
        )

    @dg.asset(
        key=drift_key,
        group_name=spec.name,
        deps=[profile_key, live_key, champion_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        tags=INGEST_TAGS,
        pool=WAREHOUSE_POOL,
        kinds={"whylogs"},
        description="Per-feature drift of the partition against the champion's training window "
        "(Hellinger distance with thresholds calibrated inside that window; KS and "
        "chi-square from whylogs), with the label rate.",
    )
    def drift(
        context: dg.AssetExecutionContext,
        warehouse: Warehouse,
        registry: ModelRegistry,
        profiles: ProfileStore,
        alerts: AlertSink,
    ) -> dg.MaterializeResult:
        found: dict[str, Any] = {}
        raised = []
        with warehouse.connect() as con:
            for key in context.partition_keys:
                report = monitor_steps.drift_step(
                    con, spec, key, registry.for_pipeline(spec.name), profiles.for_pipeline(spec.name)
                )
                if report is None:
                    found[key] = "no champion yet: no reference to compare with"
                    continue
                result = report.result
                found[key] = {
                    "against": report.champion_version,
                    "share": result.share,
                    "drifted": result.drifted,
                    "description": result.describe(),
                    "label_rate": report.label_rate,
                    "reference_label_rate": report.reference_label_rate,
                    "prediction_hellinger": report.prediction_hellinger,
                }
                if result.share is not None and result.share >= spec.monitoring.drift_share:
                    raised.append(
                        str(
                            alerts.notify(
                                spec,
                                "warning",
                                key,
                                result.describe(),
                                "the drift sensor retrains when drift is confirmed and hurts",
                            )
                        )
                    )
        return dg.MaterializeResult(
            metadata={
                "drift": drift_table(found),
                "alerts": dg.MetadataValue.md("\n".join(raised) or "none"),
            }
        )

    monitoring_dashboard = monitoring_dashboard_asset(spec)

    return [profile, live_performance, drift, monitoring_dashboard]
