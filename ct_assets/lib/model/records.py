"""The registry's typed records: a trained model, its evaluation against the champion, the
gate's verdict, and each move of the champion alias. Validated when written and when read; JSON
only in the registry's files."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ct_assets.lib.model.calibration import Calibration
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.model.model_training import FeatureLayout


class Record(BaseModel):
    """A stored fact: immutable, and a misspelt field is an error rather than a silent extra."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Environment(Record):
    """The interpreter, library versions and code version a model was trained with."""

    python: str
    libraries: dict[str, str]
    code_version: str


class RawFile(Record):
    """A landed file whose rows reached a training set."""

    path: str
    sha256: str
    rows: int | None = None


class GateVerdict(Record):
    """The gate's decision on a candidate, as stored (see `gate.Verdict`)."""

    passed: bool
    reasons: list[str]  # why it failed; empty when it passed
    notes: list[str] = []  # what was checked and held
    figures: dict[str, dict[str, float | None]] = {}  # metric -> model -> value
    alert: str | None = None  # set when the verdict needs a person


class RecordedEvaluation(Record):
    """Candidate and champion scored on the same holdout by the same code."""

    holdout_partitions: list[str]
    against: str | None  # the champion's version, when it could score the holdout
    candidate: Metrics
    champion: Metrics | None
    candidate_uncalibrated: Metrics | None = None
    segments: dict[str, Metrics] = {}
    partitions: dict[str, Metrics] = {}  # the candidate on each holdout partition
    notes: list[str] = []
    figures: dict[str, dict[str, float | None]] = {}


class TrainedModel(Record):
    """What training knows about a model: its artifact, parameters and lineage to the raw files."""

    pipeline: str
    model_sha256: str
    params: dict[str, Any]
    seed: int
    thread_count: int
    best_iteration: int
    training_cpu_seconds: float
    threshold: float
    calibration: Calibration | None = None
    layout: FeatureLayout
    dataset_version: str
    dataset_path: str
    partitions: dict[str, list[str]]  # split -> partition keys
    rows: dict[str, int]  # split -> rows
    label_rate: dict[str, float | None]  # split -> positive label rate
    raw_files: dict[str, list[RawFile]] = {}  # partition key -> landed files
    feature_importance: dict[str, float]  # column -> share of importance (sums to 1)
    feature_version: str
    feature_definitions: dict[str, str]  # feature group -> definition version
    environment: Environment
    refit_of: str | None = None  # the gated candidate this model refits on its whole window

    def window_label_rate(self) -> float | None:
        """The label rate of the whole training window: the splits' rates weighted by their rows
        (None when no split recorded one)."""
        rates = {split: r for split, r in self.label_rate.items() if r is not None}
        if not rates:
            return None
        if all(self.rows.get(split) for split in rates):
            return sum(r * self.rows[split] for split, r in rates.items()) / sum(self.rows[s] for s in rates)
        return sum(rates.values()) / len(rates)


class ModelVersion(TrainedModel):
    """A registered model version: the trained model, its id, and once judged, its evaluation and
    the gate's verdict."""

    version: str
    registered_at: str
    evaluation: RecordedEvaluation | None = None
    verdict: GateVerdict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict is not None and self.verdict.passed

    @property
    def holdout_auc(self) -> float | None:
        return self.evaluation.candidate.auc if self.evaluation else None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ChampionMove(Record):
    """A promotion or rollback of the champion alias: from `previous` to `version`, by whom, why."""

    at: str
    action: str  # "promote" | "rollback"
    version: str
    previous: str | None
    who: str
    why: str
