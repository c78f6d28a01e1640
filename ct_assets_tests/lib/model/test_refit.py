"""The refit on the whole window, on real CatBoost models: a passed candidate is refitted with its
tree count on every split, calibrated on its own out-of-sample logits of the newest partitions,
registered as its own version with the candidate's verdict, and identical when refitted again; a
refused candidate is not refitted; a later candidate is judged against the candidate a refit
champion came from. The backtest serves refits when the spec asks for them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.model import model_training, refit
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor import backtest
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets_tests.conftest import without_refit
from ct_assets_tests.lib.conftest import DAYS as FLIGHT_DAYS
from ct_assets_tests.lib.model.conftest import DAYS


def _passed_candidate(
    world: dict, name: str
) -> tuple[Registry, model_steps.CandidateRef, model_steps.TrainingSetRef]:
    registry = Registry(world["root"] / name, world["spec"].name)
    ref = model_steps.freeze_training_set(world["con"], world["spec"], registry, DAYS[-1])
    candidate = model_steps.train_candidate(world["spec"], registry, ref)
    assert model_steps.evaluate_candidate(world["spec"], registry, candidate, ref).verdict.passed
    return registry, candidate, ref


def test_a_passed_candidate_is_refitted_on_its_whole_window_as_its_own_version(world: dict) -> None:
    spec = world["spec"]
    registry, candidate, ref = _passed_candidate(world, "refit")
    served = refit.refit_candidate(spec, registry, candidate)
    source, record = registry.get(candidate.version), registry.get(served.version)
    assert record.refit_of == candidate.version and served.version != candidate.version
    assert record.verdict.passed and record.verdict.reasons == []
    assert record.verdict.notes[-1].startswith(f"refit of {candidate.version} on its whole window")
    assert record.evaluation == source.evaluation and record.dataset_version == source.dataset_version
    newest = ref.partitions["validation"] + ref.partitions["holdout"]
    assert record.calibration.fitted_on == newest
    assert record.calibration.rows == ref.rows["validation"] + ref.rows["holdout"]
    before, after = (
        load_model(registry.models, candidate.model_sha256),
        load_model(registry.models, served.model_sha256),
    )
    assert after.tree_count_ == before.tree_count_
    holdout = model_steps.load_split(ref, "holdout")
    layout = record.layout
    assert not np.allclose(
        model_training.score(after, holdout, layout), model_training.score(before, holdout, layout)
    )
    assert record.calibration.slope == source.calibration.slope, "the candidate's slope is kept"
    newest_rate = (
        ref.label_rate["validation"] * ref.rows["validation"]
        + ref.label_rate["holdout"] * ref.rows["holdout"]
    ) / record.calibration.rows
    assert abs(record.calibration.mean_after - newest_rate) < 0.01, "the level follows the newest labels"
    count = len(registry.versions())
    assert refit.refit_candidate(spec, registry, candidate) == served, "a rerun returns the same refit"
    assert len(registry.versions()) == count
    model_steps.promote(spec, registry, served, who="test")
    assert registry.champion_version() == served.version


def test_the_same_window_gives_the_same_refit(world: dict) -> None:
    registry, candidate, ref = _passed_candidate(world, "deterministic")
    record = registry.get(candidate.version)
    window = pd.read_parquet(ref.path)
    holdout = model_steps.load_split(ref, "holdout")
    scores = []
    for _ in range(2):
        model, _ = refit.refit_window(
            load_model(registry.models, candidate.model_sha256),
            record.calibration,
            window,
            world["spec"],
            record.layout,
        )
        scores.append(model_training.score(model, holdout, record.layout))
    assert np.array_equal(scores[0], scores[1])


def test_a_refused_candidate_is_not_refitted(world: dict) -> None:
    registry = Registry(world["root"] / "refused", world["spec"].name)
    weak = world["weak"]
    ref = model_steps.freeze_training_set(world["con"], weak, registry, DAYS[-1])
    candidate = model_steps.train_candidate(weak, registry, ref)
    assert not model_steps.evaluate_candidate(weak, registry, candidate, ref).verdict.passed
    with pytest.raises(ValueError, match="did not pass the gate"):
        refit.refit_candidate(weak, registry, candidate)


def test_the_gate_judges_a_later_candidate_against_the_candidate_a_refit_came_from(world: dict) -> None:
    spec = world["spec"]
    registry, candidate, ref = _passed_candidate(world, "judged")
    model_steps.promote(spec, registry, refit.refit_candidate(spec, registry, candidate), who="test")
    later = model_steps.train_candidate(spec, registry, ref)
    result = model_steps.evaluate_candidate(spec, registry, later, ref)
    assert result.champion_version == candidate.version
    assert any(note.endswith("which did not train on this holdout") for note in result.notes), result.notes


def test_the_backtest_serves_refits_unless_the_spec_says_not(small_spec, five_days) -> None:
    assert small_spec.training.refit, "the default"
    run = backtest.Backtest(small_spec, five_days).run("periodic", FLIGHT_DAYS[2])
    plain = backtest.Backtest(without_refit(small_spec), five_days).run("static", FLIGHT_DAYS[2])
    # one retrain: after the first scored day; none after the last, whose model would score nothing
    assert [d["partition"] for d in run.scored] == FLIGHT_DAYS[3:] and run.retrains == 1
    assert run.scored[0]["auc"] != plain.scored[0]["auc"], "the first model served is the refit"
    assert run.cpu_seconds > 0


def test_a_refit_s_prediction_reference_is_its_candidate_s_holdout_scores(world: dict) -> None:
    spec = world["spec"]
    registry, candidate, ref = _passed_candidate(world, "reference")
    served = registry.get(refit.refit_candidate(spec, registry, candidate).version)
    candidate_profile = monitor_steps.holdout_prediction_profile(registry.get(candidate.version), registry)
    refit_profile = monitor_steps.holdout_prediction_profile(served, registry)
    summary = candidate_profile.get_column("score").to_summary_dict()
    assert refit_profile.get_column("score").to_summary_dict() == summary
    holdout = model_steps.load_split(ref, "holdout")
    candidate_scores = model_training.score(
        load_model(registry.models, candidate.model_sha256), holdout, served.layout
    )
    assert summary["distribution/mean"] == pytest.approx(candidate_scores.mean())
