"""CatBoost training on real flight features: inputs typed one way, deterministic bytes, scores."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.model import model_training
from ct_assets.lib.model.model_store import save_model
from ct_assets.lib.model.model_training import MISSING_CATEGORY, FeatureLayout
from ct_assets_tests.lib.conftest import DAYS


def test_layout_of_the_spec_lists_categoricals_first(small_spec) -> None:
    layout = FeatureLayout.of(small_spec)
    assert layout.categorical == small_spec.categorical_features
    assert layout.columns == [*small_spec.categorical_features, *small_spec.numeric_features]


def test_model_inputs_type_every_column_and_name_missing_ones() -> None:
    layout = FeatureLayout(categorical=["carrier"], numeric=["distance"])
    frame = pd.DataFrame({"carrier": ["AA", None, 9], "distance": ["100", "far", None], "other": 1})
    inputs = model_training.model_inputs(frame, layout)
    assert list(inputs.columns) == ["carrier", "distance"]
    assert inputs["carrier"].tolist() == ["AA", MISSING_CATEGORY, "9"]
    assert inputs["distance"].dtype == "float64" and inputs["distance"].isna().sum() == 2
    with pytest.raises(KeyError, match=r"rows lack the model's feature columns \['distance'\]"):
        model_training.model_inputs(frame.drop(columns="distance"), layout)


def test_training_is_deterministic_and_scores_are_probabilities(small_spec, five_days, tmp_path) -> None:
    layout = FeatureLayout.of(small_spec)
    params = small_spec.training.params
    train, validation, holdout = (five_days[d] for d in DAYS[:3])
    first = model_training.train(train, validation, small_spec, layout, params)
    second = model_training.train(train, validation, small_spec, layout, params)
    assert save_model(tmp_path, first) == save_model(tmp_path, second)  # same bytes
    scores = model_training.score(first, holdout, layout)
    assert scores.shape == (len(holdout),) and ((scores >= 0) & (scores <= 1)).all()
    labels = model_training.labels(holdout, small_spec)
    assert set(np.unique(labels)) == {0, 1}
    assert scores[labels == 1].mean() > scores[labels == 0].mean()  # it learned something
    assert model_training.score(first, holdout.head(0), layout).shape == (0,)


def test_environment_records_versions_and_the_code_version() -> None:
    recorded = model_training.environment()
    assert set(recorded["libraries"]) == {"catboost", "pandas", "numpy", "duckdb", "dagster", "pandera"}
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", recorded["code_version"])


def test_code_version_outside_a_git_checkout_is_unknown(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(model_training, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert model_training.code_version() == "unknown"


def test_early_stopping_keeps_the_best_iteration_and_null_trains_every_tree(small_spec, five_days) -> None:
    layout = FeatureLayout.of(small_spec)
    train, validation = five_days[DAYS[0]], five_days[DAYS[1]]
    params = small_spec.training.params.model_copy(update={"iterations": 300, "early_stopping_rounds": 5})
    stopped = model_training.train(train, validation, small_spec, layout, params)
    assert stopped.tree_count_ == stopped.get_best_iteration() + 1 < 300
    every = params.model_copy(update={"early_stopping_rounds": None})
    assert model_training.train(train, validation, small_spec, layout, every).tree_count_ == 300
