"""The data layer as Dagster assets: a second spec is a second, independent asset group; runs on a
real DuckDB file; blocking checks block; reruns give the same tables; the catalog has schemas."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.resources import LandingZone, Warehouse, default_resources
from ct_assets.lib.core.spec import PipelineSpec, load_all_specs
from ct_assets_tests.conftest import FLIGHTS_SPEC
from ct_assets_tests.defs.data import loans_pipeline

DAYS = ["2024-03-01", "2024-03-02"]


@pytest.fixture
def pipelines(tmp_path: Path) -> list[PipelineSpec]:
    folder = tmp_path / "pipelines"
    shutil.copytree(FLIGHTS_SPEC.parent, folder / "flights_delay")
    loans_pipeline.write_pipeline(folder)
    return load_all_specs(folder)


@pytest.fixture
def loans(pipelines: list[PipelineSpec]) -> PipelineSpec:
    return next(s for s in pipelines if s.name == "loans")


@pytest.fixture
def resources(tmp_path: Path) -> dict:
    loans_pipeline.write_landing(tmp_path / "landing", DAYS)
    return {
        "warehouse": Warehouse(path=str(tmp_path / "w.duckdb")),
        "landing": LandingZone(root=str(tmp_path / "landing")),
    }


def _materialize(
    spec: PipelineSpec, resources: dict, partition: str, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    assets = [a for a in build_data_defs(spec).assets or [] if isinstance(a, dg.AssetsDefinition)]
    partitioned = [a for a in assets if a.partitions_def is not None]
    return dg.materialize(
        assets,
        resources=resources,
        partition_key=partition,
        instance=instance,
        selection=[k for a in partitioned for k in a.keys]
        + [k for a in assets if a.partitions_def is None for k in a.keys],
        raise_on_error=False,
    )


def test_each_spec_is_its_own_prefixed_asset_group(pipelines: list[PipelineSpec]) -> None:
    defs = dg.Definitions.merge(
        *(build_data_defs(s) for s in pipelines), dg.Definitions(resources=default_resources())
    )
    graph = defs.resolve_asset_graph()
    by_group: dict[str, set[str]] = {}
    for key in graph.get_all_asset_keys():
        by_group.setdefault(graph.get(key).group_name, set()).add(key.to_user_string())
    assert by_group["loans"] == {
        "loans/context_regions",
        "loans/raw",
        "loans/validated",
        "loans/quarantine",
        "loans/features_application",
        "loans/labels",
        "loans/features",
    }
    assert all(k.startswith("flights_delay/") for k in by_group["flights_delay"])
    assert "flights_delay/features_origin_weather" in by_group["flights_delay"]
    # the lineage runs raw -> validated -> feature groups -> features, per pipeline
    features = graph.get(dg.AssetKey(["loans", "features"]))
    assert features.parent_keys == {
        dg.AssetKey(["loans", "features_application"]),
        dg.AssetKey(["loans", "labels"]),
    }
    application = graph.get(dg.AssetKey(["loans", "features_application"]))
    assert dg.AssetKey(["loans", "context_regions"]) in application.parent_keys


def test_catalog_shows_column_schemas_and_freshness(pipelines: list[PipelineSpec]) -> None:
    flights = next(s for s in pipelines if s.name == "flights_delay")
    defs = dg.Definitions.merge(build_data_defs(flights), dg.Definitions(resources=default_resources()))
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    schema = specs["flights_delay/validated"].metadata["dagster/column_schema"]
    carrier = next(c for c in schema.columns if c.name == "carrier")
    assert carrier.description == "Two-letter carrier code" and not carrier.constraints.nullable
    features = specs["flights_delay/features"].metadata["dagster/column_schema"]
    assert "origin_temp" in [c.name for c in features.columns]
    assert specs["flights_delay/raw"].freshness_policy is not None
    assert (
        specs["flights_delay/features_plane"].code_version
        != specs["flights_delay/features_schedule"].code_version
    )


def test_second_pipeline_runs_end_to_end_and_reruns_identically(loans, resources) -> None:
    with dg.instance_for_test() as instance:
        for day in DAYS:
            result = _materialize(loans, resources, day, instance)
            assert result.success
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert checks == {
                "rows_conserved": True,
                "quarantine_rate": True,
                "outliers": True,
                "no_future_information": True,
                "one_row_per_validated_row": True,
            }
        path = resources["warehouse"].path
        with duckdb.connect(path, read_only=True) as con:
            before = con.execute("SELECT * FROM loans.features ORDER BY loan_id").fetchall()
        assert len(before) == 120
        assert _materialize(loans, resources, DAYS[0], instance).success
        with duckdb.connect(path, read_only=True) as con:
            after = con.execute("SELECT * FROM loans.features ORDER BY loan_id").fetchall()
            raw_rows = con.execute("SELECT count(*) FROM loans.raw").fetchone()[0]
        assert after == before and raw_rows == 120


def test_blocking_quarantine_check_stops_features(loans, resources, tmp_path) -> None:
    bad = loans_pipeline.applications(DAYS[0])
    bad.loc[:29, "grade"] = "Z"  # half the rows break a rule: over the 20% limit
    bad.to_csv(tmp_path / "landing" / "loans" / f"{DAYS[0]}.csv", index=False)
    with dg.instance_for_test() as instance:
        result = _materialize(loans, resources, DAYS[0], instance)
        assert not result.success
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not checks["quarantine_rate"].passed
        assert "50.00%" in checks["quarantine_rate"].description
        materialized = {
            m.asset_key.to_user_string()
            for m in result.get_asset_materialization_events()
            and [e.materialization for e in result.get_asset_materialization_events()]
        }
        assert "loans/validated" in materialized and "loans/quarantine" in materialized
        assert "loans/features_application" not in materialized
        assert "loans/features" not in materialized
    with duckdb.connect(resources["warehouse"].path, read_only=True) as con:
        reasons = con.execute("SELECT DISTINCT reason FROM loans.quarantine").fetchall()
    assert reasons == [("grade 'Z' is not an allowed value",)]
