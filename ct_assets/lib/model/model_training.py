"""CatBoost training and scoring, deterministic: fixed seed and thread count, recorded versions."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.settings import REPO_ROOT
from ct_assets.lib.core.spec import ModelParams, PipelineSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from catboost import CatBoostClassifier

MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class FeatureLayout:
    """Which columns a model reads, and which of them are categorical."""

    categorical: list[str]
    numeric: list[str]

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    @classmethod
    def of(cls, spec: PipelineSpec) -> FeatureLayout:
        return cls(categorical=spec.categorical_features, numeric=spec.numeric_features)


def model_inputs(frame: pd.DataFrame, layout: FeatureLayout) -> pd.DataFrame:
    """The model's input frame: categoricals as text (nulls as a category), numerics as floats."""
    import pandas as pd

    missing = [c for c in layout.columns if c not in frame.columns]
    if missing:
        raise KeyError(f"rows lack the model's feature columns {missing}")
    inputs = pd.DataFrame(index=frame.index)
    for column in layout.categorical:
        inputs[column] = (
            frame[column].astype(object).where(frame[column].notna(), MISSING_CATEGORY).astype(str)
        )
    for column in layout.numeric:
        inputs[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return inputs


def labels(frame: pd.DataFrame, spec: PipelineSpec) -> np.ndarray:
    return frame[spec.label.column].astype(bool).astype(int).to_numpy()


def _classifier(params: ModelParams, iterations: int, early_stopping: bool) -> CatBoostClassifier:
    from catboost import CatBoostClassifier

    return CatBoostClassifier(
        iterations=iterations,
        depth=params.depth,
        learning_rate=params.learning_rate,
        l2_leaf_reg=params.l2_leaf_reg,
        random_seed=params.seed,
        thread_count=params.thread_count,
        early_stopping_rounds=params.early_stopping_rounds if early_stopping else None,
        loss_function="Logloss",
        eval_metric="AUC",
        verbose=False,
        allow_writing_files=False,
    )


def _pool(rows: pd.DataFrame, spec: PipelineSpec, layout: FeatureLayout) -> Any:
    from catboost import Pool

    return Pool(model_inputs(rows, layout), labels(rows, spec), cat_features=layout.categorical)


def train(
    train_rows: pd.DataFrame,
    validation_rows: pd.DataFrame,
    spec: PipelineSpec,
    layout: FeatureLayout,
    params: ModelParams,
) -> CatBoostClassifier:
    """Fit CatBoost with native categoricals, stopped early on the validation split when the
    params ask for it (`early_stopping_rounds`; the best iteration's trees are kept), else for
    every one of `iterations` trees."""
    stopping = params.early_stopping_rounds is not None
    model = _classifier(params, params.iterations, early_stopping=stopping)
    model.fit(
        _pool(train_rows, spec, layout),
        eval_set=_pool(validation_rows, spec, layout),
        use_best_model=stopping,
    )
    return model


def train_fixed(
    rows: pd.DataFrame, spec: PipelineSpec, layout: FeatureLayout, params: ModelParams, iterations: int
) -> CatBoostClassifier:
    """Fit CatBoost on all of `rows` for exactly `iterations` trees (no validation split to stop on)."""
    model = _classifier(params, iterations, early_stopping=False)
    model.fit(_pool(rows, spec, layout))
    return model


def score(model: CatBoostClassifier, frame: pd.DataFrame, layout: FeatureLayout) -> np.ndarray:
    """Probability of the positive class for each row."""
    if frame.empty:
        import numpy as np

        return np.zeros(0)
    return model.predict_proba(model_inputs(frame, layout))[:, 1]


def environment() -> dict[str, Any]:
    """Library versions and the code version, recorded with every model."""
    libraries = {
        name: version(name) for name in ("catboost", "pandas", "numpy", "duckdb", "dagster", "pandera")
    }
    return {"python": platform.python_version(), "libraries": libraries, "code_version": code_version()}


def code_version() -> str:
    """The git commit of the code (with '+dirty' for uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")
