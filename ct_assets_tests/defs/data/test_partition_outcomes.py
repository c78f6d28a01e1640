"""A ranged run on real files and a real Dagster instance: a bad file fails its partition alone and
leaves no rows behind, the good partitions land with their own figures, Dagster's record and the
warehouse agree, and a rerun of the fixed partition lands it exactly once."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.resources import LandingZone, Warehouse
from ct_assets.lib.core.spec import PipelineSpec, load_all_specs
from ct_assets_tests.defs.data import loans_pipeline

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
BAD = "2024-03-03"
DATA_ASSETS = ("raw", "validated", "quarantine", "features_application", "labels", "features")


@pytest.fixture
def loans(tmp_path: Path) -> PipelineSpec:
    loans_pipeline.write_pipeline(tmp_path / "pipelines")
    return load_all_specs(tmp_path / "pipelines")[0]


@pytest.fixture
def resources(tmp_path: Path) -> dict:
    loans_pipeline.write_landing(tmp_path / "landing", DAYS)
    return {
        "warehouse": Warehouse(path=str(tmp_path / "w.duckdb")),
        "landing": LandingZone(root=str(tmp_path / "landing")),
    }


def _run(
    spec: PipelineSpec, resources: dict, instance: dg.DagsterInstance, first: str, last: str
) -> dg.ExecuteInProcessResult:
    """The data layer for a partition range in one run, as a CLI or UI backfill launches it."""
    assets = [a for a in build_data_defs(spec).assets or [] if isinstance(a, dg.AssetsDefinition)]
    context = [a for a in assets if a.partitions_def is None]
    partitioned = [a for a in assets if a.partitions_def is not None]
    dg.materialize(context, resources=resources, instance=instance)
    return dg.materialize(
        [*partitioned, *context],
        resources=resources,
        instance=instance,
        selection=[k for a in partitioned for k in a.keys],
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def _warehouse_partitions(path: str, table: str) -> dict[str, int]:
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute(f"SELECT _partition_key, count(*) FROM loans.{table} GROUP BY 1").fetchall()
    return dict(rows)


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["loans", asset]), asset_partitions=[partition]), limit=1
    ).records
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {k: v.value for k, v in materialization.metadata.items()}


def test_a_bad_file_fails_its_partition_alone_and_leaves_nothing(loans, resources, tmp_path) -> None:
    bad_file = tmp_path / "landing" / "loans" / f"{BAD}.csv"
    bad_file.write_bytes(b"")  # an empty file
    path = resources["warehouse"].path
    with dg.instance_for_test() as instance:
        result = _run(loans, resources, instance, DAYS[0], DAYS[-1])
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = failure.step_failure_data.error.message
        assert BAD in message and "the file is empty" in message and str(bad_file) in message

        good = set(DAYS) - {BAD}
        raw_key = dg.AssetKey(["loans", "raw"])
        assert instance.get_materialized_partitions(raw_key) == good
        assert _warehouse_partitions(path, "raw") == {day: 60 for day in good}
        assert set(_warehouse_partitions(path, "raw_tags")) == good
        # each partition's metadata holds its own figures, naming its own file
        for day in good:
            metadata = _latest_metadata(instance, "raw", day)
            assert metadata["dagster/row_count"] == 60
            assert metadata["source_files"].endswith(f"{day}.csv")

        # the fixed file, rerun alone, lands exactly once; the rerun of the whole range completes it
        loans_pipeline.applications(BAD, rows=45, seed=9).to_csv(bad_file, index=False)
        assert _run(loans, resources, instance, BAD, BAD).success
        assert _warehouse_partitions(path, "raw")[BAD] == 45
        assert _latest_metadata(instance, "raw", BAD)["dagster/row_count"] == 45
        assert _run(loans, resources, instance, DAYS[0], DAYS[-1]).success
        expected = {day: 60 for day in DAYS} | {BAD: 45}
        for table in ("raw", "features"):
            assert _warehouse_partitions(path, table) == expected, table
        for asset in DATA_ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey(["loans", asset])) == set(DAYS), asset
        for day, rows in expected.items():
            assert _latest_metadata(instance, "features", day)["dagster/row_count"] == rows
            validated = _latest_metadata(instance, "validated", day)
            assert validated["rows_in"] == rows
            assert rows == validated["dagster/row_count"] + validated["rows_quarantined"]


def test_a_corrupt_file_among_several_names_itself(loans, resources, tmp_path) -> None:
    folder = tmp_path / "landing" / "loans"
    (folder / f"{DAYS[1]}.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / f"{DAYS[1]}.csv").unlink()
    with dg.instance_for_test() as instance:
        result = _run(loans, resources, instance, DAYS[0], DAYS[2])
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert f"{DAYS[1]}.parquet" in failure.step_failure_data.error.message
        assert instance.get_materialized_partitions(dg.AssetKey(["loans", "raw"])) == {DAYS[0], DAYS[2]}
    assert set(_warehouse_partitions(resources["warehouse"].path, "raw")) == {DAYS[0], DAYS[2]}
