"""The model layer's steps: freeze a training set, train a candidate and calibrate it on the
validation split (`calibration`), evaluate it against the champion re-scored on the same holdout,
and promote it only through a passing gate."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.alerts import Alert
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, table_exists, table_name
from ct_assets.lib.data.features import definition_version, groups
from ct_assets.lib.model import calibration, gate, metrics, model_training, records
from ct_assets.lib.model.model_store import load_model, save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.paired_evidence import paired_scores
from ct_assets.lib.model.records import TrainedModel
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.model.training_set import build_training_set

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd
    from catboost import CatBoostClassifier


# Segment values with fewer holdout rows than this are left out of the report (too noisy to read);
# the gate itself only judges segments with at least the spec's min_segment_rows.
REPORT_MIN_SEGMENT_ROWS = 30


@dataclass(frozen=True)
class TrainingSetRef:
    """A frozen training set on disk, with its lineage down to the raw files."""

    pipeline: str
    version: str
    path: str
    partitions: dict[str, list[str]]
    rows: dict[str, int]
    label_rate: dict[str, float]
    raw_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateRef:
    pipeline: str
    version: str
    model_sha256: str
    threshold: float


def feature_version(spec: PipelineSpec) -> str:
    """One hash over every feature group's (and the label's) definition version."""
    versions = {group.name: definition_version(spec, group) for group in groups(spec)}
    return hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]


def raw_lineage(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, keys: list[str]) -> dict[str, list[dict]]:
    """Partition -> the raw files (path, sha256, rows) it was ingested from."""
    if not table_exists(con, spec.name, "raw_tags"):
        return {}
    rows = con.execute(
        f"SELECT {PARTITION_COLUMN}, files FROM {table_name(spec.name, 'raw_tags')} "
        f"WHERE {PARTITION_COLUMN} IN ({', '.join(key_literal(k) for k in keys)})"
    ).fetchall()
    return {key: json.loads(files) for key, files in rows}


def freeze_training_set(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, registry: Registry, as_of: str | None
) -> TrainingSetRef:
    """Build the window's training set and store it, immutable, under its content hash."""
    training_set = build_training_set(con, spec, as_of)
    path = registry.dataset_path(training_set.version)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        training_set.frame.to_parquet(temporary, index=False)
        temporary.replace(path)
    label = spec.label.column
    frame = training_set.frame
    return TrainingSetRef(
        pipeline=spec.name,
        version=training_set.version,
        path=str(path),
        partitions=training_set.partitions,
        rows={name: int((frame["_split"] == name).sum()) for name in training_set.partitions},
        label_rate={
            name: float(frame.loc[frame["_split"] == name, label].astype(float).mean())
            for name in training_set.partitions
        },
        raw_files=raw_lineage(con, spec, [k for keys in training_set.partitions.values() for k in keys]),
    )


def load_split(ref: TrainingSetRef, split: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.read_parquet(ref.path)
    return frame[frame["_split"] == split].reset_index(drop=True)


def prior_label_rate(ref: TrainingSetRef, spec: PipelineSpec) -> float:
    """The label rate of the labelled rows before the holdout (training and validation splits)."""
    import pandas as pd

    frame = pd.read_parquet(ref.path)
    return float(model_training.labels(frame[frame["_split"] != "holdout"], spec).mean())


def _fit(
    spec: PipelineSpec, ref: TrainingSetRef, layout: FeatureLayout
) -> tuple[CatBoostClassifier, calibration.Calibration]:
    return calibration.fit_calibrated(
        load_split(ref, "train"), load_split(ref, "validation"), spec, layout, ref.partitions["validation"]
    )


def train_candidate(spec: PipelineSpec, registry: Registry, ref: TrainingSetRef) -> CandidateRef:
    """Train on the frozen set, store the artifact by hash, and register the version."""
    layout = FeatureLayout.of(spec)
    started = time.process_time()
    model, calibrated = _fit(spec, ref, layout)
    cpu_seconds = time.process_time() - started
    sha = save_model(registry.models, model)
    validation = load_split(ref, "validation")
    threshold = metrics.best_f1_threshold(
        model_training.labels(validation, spec), model_training.score(model, validation, layout)
    )
    params = spec.training.params
    version = registry.register(
        TrainedModel(
            pipeline=spec.name,
            model_sha256=sha,
            params=params.model_dump(),
            seed=params.seed,
            thread_count=params.thread_count,
            best_iteration=int(model.get_best_iteration() or 0),
            training_cpu_seconds=round(cpu_seconds, 3),
            threshold=threshold,
            calibration=calibrated,
            layout=layout,
            dataset_version=ref.version,
            dataset_path=ref.path,
            partitions=ref.partitions,
            rows=ref.rows,
            label_rate=ref.label_rate,
            raw_files=ref.raw_files,
            feature_importance=feature_importance(model, layout),
            feature_version=feature_version(spec),
            feature_definitions={g.name: definition_version(spec, g) for g in groups(spec)},
            environment=model_training.environment(),
        )
    )
    return CandidateRef(spec.name, version, sha, threshold)


def feature_importance(model: CatBoostClassifier, layout: FeatureLayout) -> dict[str, float]:
    """Each feature's share of the model's importance (sums to 1)."""
    values = [float(v) for v in model.get_feature_importance()]
    total = sum(values) or 1.0
    return {column: value / total for column, value in zip(layout.columns, values, strict=True)}


def retrain_matches(spec: PipelineSpec, registry: Registry, candidate: CandidateRef) -> tuple[bool, float]:
    """Retrain from the recorded dataset, seed and parameters; compare holdout predictions."""
    import numpy as np

    record = registry.get(candidate.version)
    ref = TrainingSetRef(
        spec.name, record.dataset_version, record.dataset_path, record.partitions, record.rows, {}
    )
    layout = record.layout
    holdout = load_split(ref, "holdout")
    original = model_training.score(load_model(registry.models, candidate.model_sha256), holdout, layout)
    again = model_training.score(_fit(spec, ref, layout)[0], holdout, layout)
    difference = float(np.max(np.abs(original - again))) if len(original) else 0.0
    return bool(np.array_equal(original, again)), difference


@dataclass(frozen=True)
class EvaluationResult:
    candidate_version: str
    champion_version: str | None
    candidate: gate.Evaluation
    champion: gate.Evaluation | None
    verdict: gate.Verdict
    curves: dict[str, list[tuple[float, float, int]]]
    notes: list[str]
    uncalibrated: metrics.Metrics | None = None  # the candidate's holdout figures before calibration


def _evaluate(
    frame: pd.DataFrame, y: np.ndarray, p: np.ndarray, spec: PipelineSpec, threshold: float
) -> gate.Evaluation:
    return gate.Evaluation(
        overall=metrics.compute(y, p, threshold),
        segments=metrics.by_segment(frame, y, p, spec.segments, threshold, min_rows=REPORT_MIN_SEGMENT_ROWS),
    )


def judged_champion(registry: Registry) -> tuple[records.ModelVersion | None, list[str]]:
    """The model the gate compares a candidate with, and the verdict's notes on that choice: the
    champion, or, when the champion is a refit on its whole window (which has seen rows of later
    holdouts), the candidate it was refitted from."""
    champion = registry.champion()
    if champion is None or champion.refit_of is None:
        return champion, []
    note = (
        f"champion {champion.version} is a refit of {champion.refit_of}: the gate compares with "
        f"{champion.refit_of}, which did not train on this holdout"
    )
    return registry.get(champion.refit_of), [note]


def evaluate_candidate(
    spec: PipelineSpec,
    registry: Registry,
    candidate: CandidateRef,
    ref: TrainingSetRef,
    send_alert: Callable[[Alert], None] | None = None,
) -> EvaluationResult:
    """Score candidate and champion on the same holdout rows with the same code, and let the gate
    decide; a verdict that needs a person (both models below the floors) goes to `send_alert`."""
    holdout = load_split(ref, "holdout")
    y = model_training.labels(holdout, spec)
    layout = FeatureLayout.of(spec)
    model = load_model(registry.models, candidate.model_sha256)
    p = model_training.score(model, holdout, layout)
    ours = _evaluate(holdout, y, p, spec, candidate.threshold)
    curves: dict[str, list[tuple[float, float, int]]] = {}
    before = None
    recorded_calibration = registry.get(candidate.version).calibration
    if recorded_calibration:
        raw = model_training.score(calibration.uncalibrated(model, recorded_calibration), holdout, layout)
        before = metrics.compute(y, raw, candidate.threshold)
        curves[f"candidate {candidate.version} before calibration"] = metrics.calibration_curve(y, raw)
    curves[f"candidate {candidate.version}"] = metrics.calibration_curve(y, p)
    champion_record, notes = judged_champion(registry)
    theirs, paired = None, None
    if champion_record is not None:
        try:
            champion_model = load_model(registry.models, champion_record.model_sha256)
            q = model_training.score(champion_model, holdout, champion_record.layout)
        except KeyError as err:
            notes.append(f"champion {champion_record.version} cannot score this holdout: {err}")
        else:
            theirs = _evaluate(holdout, y, q, spec, champion_record.threshold)
            paired = paired_scores(holdout, y, p, q, spec.segments)
            curves[f"champion {champion_record.version}"] = metrics.calibration_curve(y, q)
    verdict = gate.decide(ours, theirs, spec.gate, prior_label_rate(ref, spec), paired)
    if verdict.alert and send_alert is not None:
        send_alert(
            Alert(
                "critical",
                spec.name,
                None,
                f"gate on {candidate.version} against the champion: {verdict.alert}",
                "look into the data and the features: neither model predicts well",
                spec.monitoring.owners.get("critical", spec.owner),
            )
        )
    result = EvaluationResult(
        candidate.version,
        champion_record.version if champion_record and theirs else None,
        ours,
        theirs,
        verdict,
        curves,
        notes,
        before,
    )
    registry.update(
        candidate.version,
        evaluation=records.RecordedEvaluation(
            holdout_partitions=ref.partitions["holdout"],
            against=result.champion_version,
            candidate=ours.overall,
            champion=theirs.overall if theirs else None,
            candidate_uncalibrated=before,
            segments=ours.segments,
            partitions=metrics.by_partition(holdout, y, p, candidate.threshold),
            notes=notes,
            figures=verdict.figures,
        ),
        verdict=records.GateVerdict(**verdict.as_dict()),
    )
    return result


def promote(
    spec: PipelineSpec, registry: Registry, candidate: CandidateRef, who: str
) -> records.ChampionMove:
    """Move the champion alias to the candidate; the registry refuses unless its gate passed."""
    return registry.promote(candidate.version, who=who, why="passed the evaluation gate")
