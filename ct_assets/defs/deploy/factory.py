"""Builds one pipeline's deploy assets: `online_snapshot` (per partition) and `bento`."""

from pathlib import Path

import dagster as dg

from ct_assets.defs.data.factory import INGEST_TAGS, partitions_def
from ct_assets.defs.resources import WAREHOUSE_POOL, ModelRegistry, SnapshotFolder, Warehouse
from ct_assets.lib import bento_build, online_snapshot
from ct_assets.lib.spec import PipelineSpec

CONTEXT_HISTORY_HOURS = 48.0


def build_deploy_defs(spec: PipelineSpec) -> dg.Definitions:
    key_prefix = spec.name
    context_keys = [dg.AssetKey([key_prefix, f"context_{t}"]) for t in spec.context_tables]

    @dg.asset(
        key=[key_prefix, "online_snapshot"],
        group_name=spec.name,
        deps=[*context_keys, dg.AssetKey([key_prefix, "features"])],
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        tags=INGEST_TAGS,
        kinds={"parquet"},
        description=f"The last {CONTEXT_HISTORY_HOURS:g} hours of each time-series context table "
        "(and all reference tables) as of the partition's end, published for serving.",
    )
    def online_snapshot_asset(
        context: dg.AssetExecutionContext, warehouse: Warehouse, snapshots: SnapshotFolder
    ) -> dg.MaterializeResult:
        latest = max(context.partition_keys)
        with warehouse.connect() as con:
            rows = online_snapshot.publish(
                con, spec, latest, snapshots.folder(spec.name), CONTEXT_HISTORY_HOURS
            )
        return dg.MaterializeResult(
            metadata={
                "as_of": latest,
                "rows": dg.MetadataValue.json(rows),
                "folder": dg.MetadataValue.path(str(snapshots.folder(spec.name))),
            }
        )

    @dg.asset(
        key=[key_prefix, "bento"],
        group_name=spec.name,
        deps=[dg.AssetKey([key_prefix, "champion"])],
        kinds={"bentoml"},
        description="An immutable BentoML bundle of the service and the current champion, tagged "
        "with the model version.",
    )
    def bento(registry: ModelRegistry) -> dg.MaterializeResult:
        store = registry.for_pipeline(spec.name)
        record = store.champion()
        if record is None:
            raise dg.Failure(description=f"{spec.name} has no champion to bundle")
        built = bento_build.build(spec, record, store.models / f"{record['model_sha256']}.cbm")
        size = sum(p.stat().st_size for p in Path(built.path).rglob("*") if p.is_file())
        return dg.MaterializeResult(
            metadata={
                "bento_tag": str(built.tag),
                "model_version": record["version"],
                "size_bytes": size,
                "path": dg.MetadataValue.path(built.path),
            }
        )

    return dg.Definitions(assets=[online_snapshot_asset, bento])
