"""The served model learns up to the latest label: a candidate that passed the gate is refitted on
its whole window (train, validation and holdout partitions) before it serves.

- **Trees:** the candidate's parameters and seed, for the candidate's tree count (early-stopped
  when the params ask for it); the window has no split left to stop on.
- **Calibration:** the refit keeps the candidate's slope (its Platt map's, weighed by its
  forward-checked trust), fitted where the candidate had not trained: it corrects the logit
  scale, which the refit shares (same parameters and tree count). The intercept is fitted by
  maximum likelihood on the refit's own logits of the validation and holdout partitions
  (`calibration.calibrate_level`), so the served rate is the newest labels' rate, which the refit
  has learned. The candidate's intercept would correct a label-rate shift a second time; a whole
  Platt map on rows the refit trained on would take on their in-sample overconfidence. The
  validation rows picked the candidate's tree count; the threshold stays the candidate's.
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
from ct_assets.lib.model.steps import CandidateRef, feature_importance
from ct_assets.lib.model.training_set import SPLIT_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from catboost import CatBoostClassifier

    from ct_assets.lib.core.spec import PipelineSpec

CALIBRATION_SPLITS = ("validation", "holdout")


def refit_window(
    candidate: CatBoostClassifier,
    candidate_calibration: calibration.Calibration | None,
    window: pd.DataFrame,
    spec: PipelineSpec,
    layout: FeatureLayout,
) -> tuple[CatBoostClassifier, calibration.Calibration]:
    """The candidate refitted on every row of `window` (its `_split` column names each row's split)
    for as many trees as the candidate has, with the candidate's calibration slope and an
    intercept fitted to the newest partitions (see the module)."""
    newest = window[window[SPLIT_COLUMN].isin(CALIBRATION_SPLITS)]
    model = model_training.train_fixed(window, spec, layout, spec.training.params, candidate.tree_count_)
    slope, trust = (
        (candidate_calibration.slope, candidate_calibration.trust) if candidate_calibration else (1.0, 1.0)
    )
    fitted = calibration.calibrate_level(
        model,
        calibration.raw_logits(model, newest, layout),
        model_training.labels(newest, spec),
        slope,
        trust,
        sorted(set(newest[PARTITION_COLUMN].astype(str))),
    )
    return model, fitted


def refit_candidate(spec: PipelineSpec, registry: Registry, candidate: CandidateRef) -> CandidateRef:
    """The candidate, whose gate passed, refitted on its whole frozen training set (the dataset its
    record names) and registered as its own version (`refit_of` the candidate) with the
    candidate's evaluation and verdict. A refit already registered for the candidate is returned
    as it is, so a rerun of the step promotes the same model."""
    import pandas as pd

    record = registry.get(candidate.version)
    verdict = record.verdict
    if verdict is None or not verdict.passed:
        raise ValueError(f"{spec.name} {candidate.version} did not pass the gate: it is not refitted")
    done = [v for v in registry.versions() if v.refit_of == candidate.version]
    if done:
        return CandidateRef(spec.name, done[0].version, done[0].model_sha256, done[0].threshold)
    started = time.process_time()
    model, fitted = refit_window(
        load_model(registry.models, candidate.model_sha256),
        record.calibration,
        pd.read_parquet(record.dataset_path),
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
