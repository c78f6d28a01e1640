"""The code location as the application layer reads it, built from the environment of each test:
the pipeline's assets picked by asset name, resources located under the home folder of the moment,
and the dead-run recovery sensor evaluated on demand against a real Dagster instance."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.app import code_location
from ct_assets_tests.conftest import write_flights_variant

PIPELINE = "flights_delay"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CT_HOME", str(home))
    for variable in ("CT_PIPELINES_DIR", "CT_BUILTIN_PIPELINES", "CT_WAREHOUSE", "CT_LANDING", "CT_REGISTRY"):
        monkeypatch.delenv(variable, raising=False)
    return home


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _asset_names(assets: list[dg.AssetsDefinition]) -> set[str]:
    return {key.path[-1] for asset in assets for key in asset.keys}


def test_a_selection_picks_only_the_assets_producing_those_names(home: Path) -> None:
    everything = code_location.pipeline_assets(PIPELINE)
    assert {"raw", "validated", "features", "candidate", "champion", "deployment"} <= _asset_names(everything)
    assert all(key.path[0] == PIPELINE for asset in everything for key in asset.keys)

    raw = code_location.pipeline_assets(PIPELINE, frozenset({"raw"}))
    assert [asset.key for asset in raw] == [dg.AssetKey([PIPELINE, "raw"])]
    chosen = code_location.pipeline_assets(PIPELINE, frozenset({"validated", "champion"}))
    assert {"validated", "champion"} <= _asset_names(chosen) and "raw" not in _asset_names(chosen)
    assert code_location.pipeline_assets(PIPELINE, frozenset({"no_such_asset"})) == []
    assert code_location.pipeline_assets("no_such_pipeline") == []


def test_the_pipelines_are_those_of_the_environment_at_the_call(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_flights_variant(tmp_path / "specs" / "delays_b", {"name": "delays_b"})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "specs"))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    assert _asset_names(code_location.pipeline_assets("delays_b", frozenset({"raw"}))) == {"raw"}
    assert code_location.pipeline_assets(PIPELINE) == [], "the built-in pipeline is switched off"
    assert code_location.definitions().resolve_sensor_def("dead_run_recovery") is not None


def test_resources_locate_their_files_under_the_home_folder_of_the_moment(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = code_location.resources()
    assert {"warehouse", "landing", "registry", "home", "alerts"} <= set(resources)
    assert Path(resources["warehouse"].path) == home.resolve() / "warehouse.duckdb"  # type: ignore[attr-defined]
    assert Path(resources["landing"].root) == home.resolve() / "landing"  # type: ignore[attr-defined]

    monkeypatch.setenv("CT_HOME", str(tmp_path / "moved"))
    moved = code_location.resources()
    assert Path(moved["warehouse"].path) == (tmp_path / "moved").resolve() / "warehouse.duckdb"  # type: ignore[attr-defined]


def _run_started_by(instance: dg.DagsterInstance, pid: int) -> str:
    """A run marked STARTED whose only event came from process `pid`."""
    run = instance.create_run_for_job(dg.GraphDefinition("p_ingest", node_defs=[]).to_job("p_ingest"))
    event = dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, "p_ingest", pid=pid)
    instance.report_dagster_event(event, run.run_id)
    return run.run_id


def _gone_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_a_run_whose_worker_is_gone_is_marked_failed_and_reported(
    home: Path, instance: dg.DagsterInstance
) -> None:
    pid = _gone_pid()
    dead = _run_started_by(instance, pid)
    alive = _run_started_by(instance, os.getpid())

    report = code_location.recover_dead_runs(instance)

    assert report == f"run {dead}: processes [{pid}] gone; marked failed, 0 slot(s) freed"
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED, "its worker still runs"
    assert code_location.recover_dead_runs(instance) == "no run with a dead worker", "once only"


def test_runs_of_an_instance_without_local_storage_are_left_alone(home: Path) -> None:
    with dg.DagsterInstance.ephemeral() as ephemeral:
        dead = _run_started_by(ephemeral, _gone_pid())
        assert code_location.recover_dead_runs(ephemeral) == "no run with a dead worker"
        assert ephemeral.get_run_by_id(dead).status == dg.DagsterRunStatus.STARTED
