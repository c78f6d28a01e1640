"""Builds one pipeline's deploy assets: `online_snapshot` (per partition) and `bento`."""

from pathlib import Path

import dagster as dg

from ct_assets.defs.data.common import INGEST_TAGS, partitions_def
from ct_assets.defs.resources import (
    WAREHOUSE_POOL,
    AlertSink,
    HomeFolder,
    ModelRegistry,
    PredictionLog,
    SnapshotFolder,
    Warehouse,
)
from ct_assets.defs.shared import asset_key
from ct_assets.lib.core import alerts as alerts_module
from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import partition_view_sql, table_exists
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.model import report_plots
from ct_assets.lib.monitor import service_metrics as metrics
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets.lib.serving import bento_build, proxy
from ct_assets.lib.serving import steps as deploy_steps


def build_deploy_defs(spec: PipelineSpec) -> dg.Definitions:
    name = spec.name

    history = deploy_steps.context_history_hours(spec)
    context_keys = [asset_key(spec, names.context_asset(t)) for t in spec.context_tables]

    @dg.asset(
        key=asset_key(spec, "online_snapshot"),
        group_name=spec.name,
        deps=[*context_keys, asset_key(spec, "features")],
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        tags=INGEST_TAGS,
        kinds={"parquet"},
        description=f"The last {history:g} hours of each time-series context table "
        "(and all reference tables) as of the partition's end, or of the published snapshot's when "
        "that is newer, published for serving.",
    )
    def online_snapshot_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse, snapshots: SnapshotFolder
    ) -> dg.MaterializeResult:
        latest = max(context.partition_keys)
        with warehouse.connect() as con:
            as_of, rows = online_snapshot.publish_forward(
                con, spec, latest, snapshots.folder(spec.name), history
            )
        return dg.MaterializeResult(
            metadata={
                "as_of": as_of,
                "rows": dg.MetadataValue.json(rows),
                "folder": dg.MetadataValue.path(str(snapshots.folder(spec.name))),
            }
        )

    @dg.asset(
        key=asset_key(spec, "bento"),
        group_name=spec.name,
        deps=[asset_key(spec, "champion")],
        kinds={"bentoml"},
        pool=WAREHOUSE_POOL,
        automation_condition=dg.AutomationCondition.eager(),
        description="An immutable BentoML bundle of the service and the current champion, tagged "
        "with the model version; built on every promotion, with the holdout rows and scores the "
        "rollout's inference-compatibility check needs.",
    )
    def bento(warehouse: Warehouse, registry: ModelRegistry, home: HomeFolder) -> dg.MaterializeResult:
        config = home.config()
        store = registry.for_pipeline(spec.name)
        record = store.champion()
        if record is None:
            raise dg.Failure(description=f"{spec.name} has no champion to bundle")
        built = bento_build.build(
            spec, record, store.models / f"{record.model_sha256}.cbm", config.bentoml_home
        )
        with warehouse.connect() as con:
            deploy_steps.publish_compatibility(con, spec, record, store, config)
        size = sum(p.stat().st_size for p in Path(built.path).rglob("*") if p.is_file())
        return dg.MaterializeResult(
            metadata={
                "bento_tag": str(built.tag),
                "model_version": record.version,
                "size_bytes": size,
                "path": dg.MetadataValue.path(built.path),
            }
        )

    deployment_key = asset_key(spec, "deployment")

    @dg.asset(
        key=deployment_key,
        group_name=spec.name,
        deps=[asset_key(spec, "bento")],
        kinds={"haproxy", "bentoml"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                "rollout_healthy",
                asset=deployment_key,
                description="the new bento passed compatibility and canary checks (recorded with a "
                "switch or a pending approval; a rollback fails the run instead)",
            )
        ],
        description="Rolls the champion's bento out: idle slot, inference compatibility on the holdout, "
        "canary share of real traffic with health checks, then blue-green switch or "
        "automatic rollback, which fails the run (HAProxy on the spec's stable port).",
    )
    def deployment(
        context: dg.AssetExecutionContext, registry: ModelRegistry, alerts: AlertSink, home: HomeFolder
    ):
        store = registry.for_pipeline(spec.name)
        record = store.champion()
        if record is None:
            raise dg.Failure(description=f"{spec.name} has no champion to deploy")
        tag = bento_build.bento_tag(spec, record)
        result = deploy_steps.roll_out(spec, store, tag, f"dagster run {context.run_id}", home.config())
        if result.status == "rolled_back":
            alerts.send(
                alerts_module.Alert(
                    "critical",
                    spec.name,
                    None,
                    f"rollout of {tag} rolled back: {'; '.join(result.reasons)}",
                    "the previous bento keeps serving; inspect the canary's logs",
                    spec.monitoring.owners.get("critical", spec.owner),
                )
            )
            # The run fails: the previous bento keeps serving, so the deployment did not change.
            raise dg.Failure(
                description=f"rollout of {tag} rolled back: {'; '.join(result.reasons)}",
                metadata={
                    "slot": result.slot,
                    "reasons": dg.MetadataValue.json(result.reasons),
                    "health": dg.MetadataValue.json(result.health_figures()),
                },
            )
        yield dg.MaterializeResult(
            asset_key=deployment_key,
            metadata={
                "status": result.status,
                "slot": result.slot,
                "bento": result.bento,
                # what serves all traffic now: the previous bento after a rollback
                "serving": deploy_steps.deployment(spec, home.config()).state().active_bento or "nothing",
                "reasons": dg.MetadataValue.json(result.reasons),
                "health": dg.MetadataValue.json(result.health_figures()),
                "stable_url": dg.MetadataValue.url(f"http://127.0.0.1:{spec.serving.proxy_port}"),
            },
        )
        yield dg.AssetCheckResult(
            check_name="rollout_healthy",
            asset_key=deployment_key,
            passed=True,
            description="; ".join(result.reasons) or result.status,
        )

    @dg.asset(
        key=asset_key(spec, "predictions"),
        group_name=spec.name,
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        tags=INGEST_TAGS,
        kinds={"duckdb"},
        description="Predictions the serving layer logged for the partition's events (request id, "
        "model version, slot, score), ingested from the append-only prediction log.",
    )
    def predictions(
        context: dg.AssetExecutionContext, warehouse: Warehouse, prediction_log: PredictionLog
    ) -> dg.MaterializeResult:
        counts = {}
        with warehouse.connect() as con:
            for key in context.partition_keys:
                counts[key] = monitor_steps.ingest_predictions(con, spec, key, Path(prediction_log.root))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(counts.values()),
                "per_partition": dg.MetadataValue.json(counts),
            }
        )

    @dg.asset(
        key=asset_key(spec, "service_metrics"),
        group_name=spec.name,
        partitions_def=partitions_def(spec),
        deps=[asset_key(spec, "predictions")],
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"bentoml"},
        description="Latency, throughput, errors and memory of each serving slot for the partition's "
        "requests (live numbers: the slots' Prometheus endpoint /metrics).",
    )
    def service_metrics(
        context: dg.AssetExecutionContext, warehouse: Warehouse, home: HomeFolder
    ) -> dg.MaterializeResult:

        with warehouse.connect() as con:
            logged = (
                con.execute(partition_view_sql(spec.name, "predictions", context.partition_keys)).df()
                if table_exists(con, spec.name, "predictions")
                else None
            )
        rows = metrics.summarize(logged) if logged is not None and not logged.empty else []
        deploy = deploy_steps.deployment(spec, home.config())
        state = deploy.state()
        counters = proxy.stats_if_up(deploy.layout)
        for row in rows:
            slot = row["slot"]
            info = state.slots.get(slot)
            row["memory_mib"] = metrics.process_rss_mib(info.pid) if info else None
            stats = counters.get(slot, {})
            row["proxy_5xx_total"] = int(stats.get("hrsp_5xx") or 0) if stats else None
        metadata: dict = {
            "slots": dg.MetadataValue.json(rows),
            "dagster/row_count": sum(r["rows"] for r in rows),
        }
        if rows:
            metadata["latency"] = dg.MetadataValue.md(
                report_plots.markdown_image(metrics.latency_png(logged), "latency")
            )
        return dg.MaterializeResult(metadata=metadata)

    deploy_job = dg.define_asset_job(
        names.job_name(name, "deploy"),
        executor_def=dg.in_process_executor,
        selection=dg.AssetSelection.assets(bento.key, deployment_key),
        description="Bundle the current champion and roll it out (what the automation sensor runs after a "
        "promotion; launch it by hand to redeploy).",
    )
    automation = dg.AutomationConditionSensorDefinition(
        names.automation_sensor_name(name),
        target=dg.AssetSelection.assets(bento.key, deployment_key),
        minimum_interval_seconds=15,
        description="A promotion builds the bento, and a new bento is rolled out (eager conditions).",
    )
    return dg.Definitions(
        assets=[online_snapshot_asset, bento, deployment, predictions, service_metrics],
        jobs=[deploy_job],
        sensors=[automation],
    )
