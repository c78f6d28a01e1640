"""The model layer on real flights: a first champion through the absolute gate, a worse candidate
refused with a readable reason (in the run and when the champion is materialized by hand),
reproducible training, and a rollback recorded in the audit log, with `training.refit: false`
(the candidate itself serves); and, by default, the passed candidate refitted on its whole window
as the champion."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.model.factory import build_model_defs
from ct_assets.defs.resources import JsonlAlertSink, LandingZone, ModelRegistry, Warehouse
from ct_assets.lib.core.dates import day_keys
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.data import demo_source
from ct_assets.lib.model.model_store import ArtifactError, load_model
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.conftest import without_refit, write_flights_variant

pytestmark = pytest.mark.slow
DAYS = day_keys("2013-01-08", "2013-01-21")
LENIENT = {
    "gate.min_auc": 0.55,
    "training.min_rows": 1000,
    "training.window_partitions": 14,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two weeks of flights through the real data layer, in one range run."""
    root = tmp_path_factory.mktemp("model")
    spec = load_spec(write_flights_variant(root / "pipelines" / "flights_delay", LENIENT))
    demo_source.land_context(root / "landing", spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(root / "landing", spec.name, day)
    resources = {
        "warehouse": Warehouse(path=str(root / "w.duckdb")),
        "landing": LandingZone(root=str(root / "landing")),
    }
    assets = [a for a in build_data_defs(spec).assets or [] if isinstance(a, dg.AssetsDefinition)]
    with dg.instance_for_test() as instance:
        dg.materialize(
            [a for a in assets if a.partitions_def is None], resources=resources, instance=instance
        )
        result = dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            selection=[k for a in assets if a.partitions_def is not None for k in a.keys],
            tags={
                "dagster/asset_partition_range_start": DAYS[0],
                "dagster/asset_partition_range_end": DAYS[-1],
            },
        )
        assert result.success
    return {"root": root, "spec": spec, "resources": resources}


def _train(
    spec: PipelineSpec,
    resources: dict,
    instance: dg.DagsterInstance,
    as_of: str,
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    assets = list(build_model_defs(spec).assets or [])
    return dg.materialize(
        assets,
        resources=resources,
        instance=instance,
        raise_on_error=False,
        selection=selection,
        run_config={"ops": {f"{spec.name}__training_set": {"config": {"as_of": as_of}}}}
        if selection is None or f"{spec.name}/training_set" in selection
        else None,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_champion_gate_reproducibility_and_rollback(
    data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = without_refit(data["spec"])
    resources = {
        **data["resources"],
        "registry": ModelRegistry(root=str(tmp_path / "registry")),
        "alerts": JsonlAlertSink(path=str(tmp_path / "alerts.jsonl")),
    }
    registry = Registry(tmp_path / "registry", spec.name)
    with dg.instance_for_test() as instance:
        # 1. the first model faces the absolute criteria only, and becomes the champion
        first = _train(spec, resources, instance, as_of="2013-01-21")
        checks = _checks(first)
        assert first.success, checks["gate"].description
        assert checks["reproducible"].passed and checks["gate"].passed
        assert "no champion yet" in checks["gate"].description
        assert registry.champion_version() == "v0001"
        record = registry.get("v0001")
        assert record.seed == 13 and record.thread_count == 2 and record.verdict.passed
        assert record.partitions["holdout"] == ["2013-01-19", "2013-01-20", "2013-01-21"]
        lineage = record.raw_files["2013-01-08"][0]
        assert lineage.path.endswith("2013-01-08.csv") and len(lineage.sha256) == 64
        assert set(record.environment.libraries) >= {"catboost", "pandas", "duckdb"}

        # 2. a deliberately worse candidate (one feature) is refused with a readable reason
        worse = without_refit(
            load_spec(
                write_flights_variant(
                    tmp_path / "worse" / "flights_delay", {**LENIENT, "training.features": ["distance"]}
                )
            )
        )
        refused = _train(worse, resources, instance, as_of="2013-01-21")
        gate = _checks(refused)["gate"]
        assert not refused.success and not gate.passed
        assert "< champion" in gate.description and "AUC" in gate.description
        assert registry.champion_version() == "v0001"
        assert not registry.get("v0002").verdict.passed
        assert "flights_delay/champion" not in {
            e.materialization.asset_key.to_user_string() for e in refused.get_asset_materialization_events()
        }

        # 3. materializing the champion by hand does not promote it either
        by_hand = _train(worse, resources, instance, as_of="2013-01-21", selection=["flights_delay/champion"])
        assert not by_hand.success
        failure = next(e for e in by_hand.all_events if e.is_step_failure)
        assert "v0002 cannot be promoted: AUC" in str(failure.step_failure_data.error)
        assert registry.champion_version() == "v0001"

        # 4. retraining on the same window gives the same model, which ties the champion and
        #    passes; then an operator rolls back with one command
        again = _train(spec, resources, instance, as_of="2013-01-21")
        assert again.success, _checks(again)["gate"].description
    assert registry.champion_version() == "v0003"
    assert registry.get("v0003").model_sha256 == registry.get("v0001").model_sha256
    from ct_assets import cli

    monkeypatch.setenv("CT_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("CT_PIPELINES_DIR", str(data["root"] / "pipelines"))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    assert cli.main(["rollback", "--why", "ops saw odd scores", "--who", "ann"]) == 0
    assert registry.champion_version() == "v0001"
    assert registry.audit_log()[-1] | {"at": None} == {
        "at": None,
        "action": "rollback",
        "version": "v0001",
        "previous": "v0003",
        "who": "ann",
        "why": "ops saw odd scores",
    }


def test_corrupted_or_missing_artifacts_are_refused(data: dict, tmp_path: Path) -> None:
    spec: PipelineSpec = data["spec"]
    resources = {
        **data["resources"],
        "registry": ModelRegistry(root=str(tmp_path / "registry")),
        "alerts": JsonlAlertSink(path=str(tmp_path / "alerts.jsonl")),
    }
    with dg.instance_for_test() as instance:
        assert _train(spec, resources, instance, as_of="2013-01-21").success
    registry = Registry(tmp_path / "registry", spec.name)
    sha = registry.get("v0001").model_sha256
    load_model(registry.models, sha)
    artifact = registry.models / f"{sha}.cbm"
    artifact.chmod(0o644)
    data_bytes = bytearray(artifact.read_bytes())
    data_bytes[100] ^= 0xFF
    artifact.write_bytes(bytes(data_bytes))
    with pytest.raises(ArtifactError, match="is corrupted: its sha256 is"):
        load_model(registry.models, sha)
    artifact.unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        load_model(registry.models, sha)


def test_too_little_data_is_a_clear_error_and_promotes_nothing(data: dict, tmp_path: Path) -> None:
    spec = load_spec(
        write_flights_variant(tmp_path / "strict" / "flights_delay", {**LENIENT, "training.min_rows": 100000})
    )
    resources = {
        **data["resources"],
        "registry": ModelRegistry(root=str(tmp_path / "registry")),
        "alerts": JsonlAlertSink(path=str(tmp_path / "alerts.jsonl")),
    }
    with dg.instance_for_test() as instance:
        result = _train(spec, resources, instance, as_of="2013-01-21")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "fewer than min_rows 100000" in str(failure.step_failure_data.error)
    assert Registry(tmp_path / "registry", spec.name).champion_version() is None


def test_the_champion_is_the_passed_candidate_refitted_on_its_whole_window(
    data: dict, tmp_path: Path
) -> None:
    spec: PipelineSpec = data["spec"]
    resources = {
        **data["resources"],
        "registry": ModelRegistry(root=str(tmp_path / "registry")),
        "alerts": JsonlAlertSink(path=str(tmp_path / "alerts.jsonl")),
    }
    with dg.instance_for_test() as instance:
        result = _train(spec, resources, instance, as_of="2013-01-21")
        assert result.success, _checks(result)["gate"].description
        (champion,) = [
            m
            for m in result.get_asset_materialization_events()
            if m.asset_key == dg.AssetKey([spec.name, "champion"])
        ]
    registry = Registry(tmp_path / "registry", spec.name)
    record = registry.champion()
    assert record is not None and record.version == "v0002" and record.refit_of == "v0001"
    assert record.passed and record.evaluation == registry.get("v0001").evaluation
    metadata = champion.materialization.metadata
    assert metadata["champion"].value == "v0002" and metadata["refit_of"].value == "v0001"
