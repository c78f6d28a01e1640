"""The gate through the real model steps on real CatBoost models: the champion is re-scored on
the candidate's holdout; a first model meets the floors or is refused; a planted bad champion is
replaced by a better candidate even when that candidate misses a floor (with an alert); a worse
candidate is still refused by a sound champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.core.alerts import Alert
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection, replace_partition, transaction
from ct_assets.lib.model import model_training
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.conftest import trained_model
from ct_assets_tests.defs.data import loans_pipeline

DAYS = [f"2024-03-{d:02d}" for d in range(1, 11)]


def _features(day: str, seed: int, rows: int = 300) -> pd.DataFrame:
    """A day of loan features whose default depends on grade and debt ratio, not on region."""
    rng = np.random.default_rng(seed)
    grade = rng.choice(list("ABCDE"), rows)
    ratio = rng.uniform(0, 1, rows)
    risk = pd.Series(grade).map({"A": 0.05, "B": 0.1, "C": 0.2, "D": 0.4, "E": 0.6}).to_numpy() + 0.3 * ratio
    return pd.DataFrame(
        {
            "loan_id": [f"{day}-{i}" for i in range(rows)],
            "applied_at": pd.Timestamp(day, tz="UTC")
            + pd.to_timedelta(rng.integers(0, 1440, rows), unit="min"),
            "amount": rng.uniform(100, 1000, rows),
            "debt_ratio": ratio,
            "grade": grade,
            "region": rng.choice(["north", "south", "east"], rows),
            "region_unemployment": 4.0,
            "defaulted": rng.uniform(0, 1, rows) < risk,
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("gate")
    spec = load_spec(loans_pipeline.write_pipeline(root / "pipelines"))
    con = open_connection(root / "warehouse.duckdb")
    for index, day in enumerate(DAYS):
        con.register("_f", _features(day, index))
        with transaction(con):
            replace_partition(con, spec.name, "features", day, "SELECT * FROM _f")
        con.unregister("_f")
    weak = spec.model_copy(update={"training": spec.training.model_copy(update={"features": ["region"]})})
    yield {"root": root, "con": con, "spec": spec, "weak": weak}
    con.close()


def _registry(world: dict, name: str) -> Registry:
    return Registry(world["root"] / name, world["spec"].name)


def _train(world: dict, spec: PipelineSpec, registry: Registry, alerts: list[Alert] | None = None):
    ref = model_steps.freeze_training_set(world["con"], spec, registry, DAYS[-1])
    candidate = model_steps.train_candidate(spec, registry, ref)
    sink = alerts.append if alerts is not None else None
    return candidate, model_steps.evaluate_candidate(spec, registry, candidate, ref, sink)


def _plant_bad_champion(world: dict, registry: Registry) -> str:
    """A real CatBoost model fitted to the opposite of the label, made champion behind the gate's back."""
    spec = world["spec"]
    ref = model_steps.freeze_training_set(world["con"], spec, registry, DAYS[-1])
    flip = {spec.label.column: lambda f: ~f[spec.label.column].astype(bool)}
    layout = FeatureLayout.of(spec)
    model = model_training.train(
        model_steps.load_split(ref, "train").assign(**flip),
        model_steps.load_split(ref, "validation").assign(**flip),
        spec,
        layout,
        spec.training.params,
    )
    version = registry.register(
        trained_model(
            pipeline=spec.name,
            model_sha256=save_model(registry.models, model),
            layout=layout,
            dataset_path=ref.path,
            partitions=ref.partitions,
        )
    )
    registry.update(version, verdict={"passed": True, "reasons": [], "notes": ["planted by the test"]})
    registry.promote(version, who="test", why="a champion that has gone bad")
    return version


def test_the_first_model_meets_the_floors_or_is_refused(world: dict) -> None:
    registry = _registry(world, "first")
    _, noise = _train(world, world["weak"], registry)  # region carries no signal
    assert not noise.verdict.passed
    assert any("floor" in r or "base-rate" in r for r in noise.verdict.reasons), noise.verdict.reasons
    candidate, sound = _train(world, world["spec"], registry)
    assert sound.verdict.passed, sound.verdict.reasons
    assert sound.champion is None and "base_rate" in sound.verdict.figures["log_loss"]
    assert registry.get(candidate.version).label_rate["holdout"] == pytest.approx(
        sound.candidate.overall.positive_rate
    )


def test_a_planted_bad_champion_is_replaced_by_a_better_candidate_below_a_floor(world: dict) -> None:
    registry = _registry(world, "planted")
    bad = _plant_bad_champion(world, registry)
    alerts: list[Alert] = []
    candidate, result = _train(world, world["weak"], registry, alerts)
    # the champion was re-scored on the candidate's own holdout rows
    assert result.champion_version == bad and result.champion.overall.rows == result.candidate.overall.rows
    assert result.champion.overall.auc < 0.45
    assert result.candidate.overall.auc > result.champion.overall.auc
    assert result.verdict.passed, result.verdict.reasons
    assert len(alerts) == 1 and alerts[0].tier == "critical" and "the candidate serves" in alerts[0].cause
    figures = registry.get(candidate.version).verdict.figures
    assert figures["auc"]["champion"] == result.champion.overall.auc
    model_steps.promote(world["spec"], registry, candidate, who="test")
    assert registry.champion_version() == candidate.version


def test_a_worse_candidate_is_still_refused_by_a_sound_champion(world: dict) -> None:
    registry = _registry(world, "sound")
    champion, first = _train(world, world["spec"], registry)
    assert first.verdict.passed
    model_steps.promote(world["spec"], registry, champion, who="test")
    alerts: list[Alert] = []
    _, worse = _train(world, world["weak"], registry, alerts)
    assert not worse.verdict.passed and not alerts
    assert worse.verdict.reasons[0].startswith("AUC") and "< champion" in worse.verdict.reasons[0]
    assert worse.verdict.figures["auc"] == {
        "candidate": worse.candidate.overall.auc,
        "champion": worse.champion.overall.auc,
    }
