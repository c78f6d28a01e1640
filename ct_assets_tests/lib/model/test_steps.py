"""The gate through the real model steps on real CatBoost models: the champion is re-scored on
the candidate's holdout; a first model meets the floors or is refused (its figures recorded per
holdout partition); a planted bad champion is replaced by a better candidate even when that
candidate misses a floor (with an alert); a worse candidate is still refused by a sound champion."""

from __future__ import annotations

import pytest

from ct_assets.lib.core.alerts import Alert
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model import model_training
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.conftest import trained_model
from ct_assets_tests.lib.model.conftest import DAYS


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
    record = registry.get(candidate.version)
    assert record.label_rate["holdout"] == pytest.approx(sound.candidate.overall.positive_rate)
    # the figures on each holdout partition, which the retrain trigger holds the model to
    by_day = record.evaluation.partitions
    assert sorted(by_day) == record.partitions["holdout"]
    assert sum(m.rows for m in by_day.values()) == sound.candidate.overall.rows


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
