"""The served model learns up to the latest label: a candidate that passed the gate is refitted on
its whole window (train, validation and holdout partitions) before it serves.

- **Trees:** the candidate's parameters and seed, for the candidate's early-stopped tree count;
  the window has no split left to stop on.
- **Calibration:** the Platt map (`calibration.calibrate_with`, with its forward-checked trust) is
  fitted on the candidate's uncalibrated logits on the validation and holdout partitions, the
  newest labelled rows, which the candidate did not train on, and written into the refit's scale
  and bias. The refit's own logits on those rows would be in-sample and overconfident; the
  candidate's are out-of-sample and on the same logit scale (same parameters and tree count), so
  they stand for what the refit will score on rows it has not seen.
- **Judging:** the refit trained on every row the gate could judge it on, so the gate judges the
  candidate it came from (`ModelVersion.refit_of`): a later candidate is compared with that model,
  re-scored on the later candidate's holdout, never with the refit that has seen those rows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ct_assets.lib.core.warehouse import PARTITION_COLUMN
from ct_assets.lib.model import calibration, model_training
from ct_assets.lib.model.model_store import load_model, save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.records import GateVerdict, TrainedModel
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.model.steps import CandidateRef, TrainingSetRef, feature_importance

if TYPE_CHECKING:
    import pandas as pd
    from catboost import CatBoostClassifier

    from ct_assets.lib.core.spec import PipelineSpec

SPLIT_COLUMN = "_split"
CALIBRATION_SPLITS = ("validation", "holdout")


def refit_window(
    candidate: CatBoostClassifier,
    candidate_calibration: calibration.Calibration | None,
    window: pd.DataFrame,
    spec: PipelineSpec,
    layout: FeatureLayout,
) -> tuple[CatBoostClassifier, calibration.Calibration]:
    """The candidate refitted on every row of `window` (its `_split` column names each row's split)
    for as many trees as the candidate has, calibrated on the candidate's out-of-sample logits
    (see the module)."""
    newest = window[window[SPLIT_COLUMN].isin(CALIBRATION_SPLITS)].sort_values(
        PARTITION_COLUMN, kind="stable"
    )
    base = calibration.uncalibrated(candidate, candidate_calibration) if candidate_calibration else candidate
    logits = calibration.raw_logits(base, newest, layout)
    model = model_training.train_fixed(window, spec, layout, spec.training.params, candidate.tree_count_)
    partitions = newest[PARTITION_COLUMN].astype(str).to_numpy()
    fitted = calibration.calibrate_with(
        model, logits, model_training.labels(newest, spec), partitions, sorted(set(partitions.tolist()))
    )
    return model, fitted


def refit_candidate(
    spec: PipelineSpec, registry: Registry, candidate: CandidateRef, ref: TrainingSetRef
) -> CandidateRef:
    """Refit a candidate whose gate passed on its whole frozen training set and register the refit
    as its own version (`refit_of` the candidate), with the candidate's evaluation and verdict."""
    import pandas as pd

    record = registry.get(candidate.version)
    verdict = record.verdict
    if verdict is None or not verdict.passed:
        raise ValueError(f"{spec.name} {candidate.version} did not pass the gate: it is not refitted")
    started = time.process_time()
    model, fitted = refit_window(
        load_model(registry.models, candidate.model_sha256),
        record.calibration,
        pd.read_parquet(ref.path),
        spec,
        record.layout,
    )
    cpu_seconds = time.process_time() - started
    sha = save_model(registry.models, model)
    trained = TrainedModel.model_validate(
        {
            **record.model_dump(include=set(TrainedModel.model_fields)),
            "model_sha256": sha,
            "training_cpu_seconds": round(cpu_seconds, 3),
            "calibration": fitted,
            "feature_importance": feature_importance(model, record.layout),
            "environment": model_training.environment(),
            "refit_of": candidate.version,
        }
    )
    version = registry.register(trained)
    note = f"refit of {candidate.version} on its whole window; the gate's verdict is {candidate.version}'s"
    registry.update(
        version,
        evaluation=record.evaluation,
        verdict=GateVerdict(**{**verdict.model_dump(), "notes": [*verdict.notes, note]}),
    )
    return CandidateRef(spec.name, version, sha, candidate.threshold)
