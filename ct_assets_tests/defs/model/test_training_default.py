"""The training set needs no run config: executed as a job with none, it trains as of the newest
partition whose features Dagster recorded (a partition written outside Dagster is not one)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.model.factory import build_model_defs
from ct_assets.defs.resources import JsonlAlertSink, LandingZone, ModelRegistry, Warehouse
from ct_assets.lib.core.spec import load_all_specs
from ct_assets.lib.core.warehouse import connection
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import partition_files
from ct_assets_tests.defs.data import loans_pipeline

DAYS = [f"2024-03-{d:02d}" for d in range(1, 10)]


def test_training_set_runs_without_config_as_of_the_newest_complete_partition(tmp_path: Path) -> None:
    loans_pipeline.write_pipeline(tmp_path / "pipelines")
    spec = load_all_specs(tmp_path / "pipelines")[0]
    landing = tmp_path / "landing"
    loans_pipeline.write_landing(landing, [])
    for index, day in enumerate(DAYS):
        loans_pipeline.applications(day, rows=150, seed=index).to_csv(
            landing / "loans" / f"{day}.csv", index=False
        )
    resources = {
        "warehouse": Warehouse(path=str(tmp_path / "w.duckdb")),
        "landing": LandingZone(root=str(landing)),
        "registry": ModelRegistry(root=str(tmp_path / "registry")),
        "alerts": JsonlAlertSink(path=str(tmp_path / "alerts.jsonl")),
    }
    training_key = dg.AssetKey(["loans", "training_set"])
    defs = dg.Definitions.merge(
        build_data_defs(spec),
        build_model_defs(spec),
        dg.Definitions(
            jobs=[
                dg.define_asset_job("ingest", selection="tag:ct/stage=ingest"),
                dg.define_asset_job("train", selection=[training_key]),
            ],
            resources=resources,
        ),
    )
    with dg.instance_for_test() as instance:
        context = [a for a in build_data_defs(spec).assets or [] if isinstance(a, dg.AssetsDefinition)]
        dg.materialize(
            [a for a in context if a.partitions_def is None], resources=resources, instance=instance
        )
        ingested = defs.resolve_job_def("ingest").execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": DAYS[0],
                "dagster/asset_partition_range_end": DAYS[-2],
            },
        )
        assert ingested.success
        # the last day reaches the warehouse outside Dagster: not a complete partition for Dagster
        with connection(resources["warehouse"].path) as con:
            day = DAYS[-1]
            data_steps.ingest_raw(con, spec, day, partition_files(landing, "loans", day))
            data_steps.validate_partition(con, spec, day)
            for group in groups(spec):
                data_steps.materialize_group(con, spec, group, day)
            data_steps.build_features(con, spec, day)

        result = defs.resolve_job_def("train").execute_in_process(instance=instance)
        assert result.success
        event = next(e for e in result.get_asset_materialization_events() if e.asset_key == training_key)
        metadata = {k: v.value for k, v in event.materialization.metadata.items()}
        assert metadata["as_of"] == DAYS[-2]
        assert metadata["partitions"]["holdout"] == DAYS[-3:-1]
