"""Retraining-policy backtest: replay a stretch of partitions through the same library code under
several policies and measure what each buys in accuracy and costs in retraining.

Every policy starts from the same first model, trained on the first training window. A model is
trained and calibrated as the candidate step does (`calibration.fit_calibrated` on the window's
time-ordered splits) and judged by the loop's gate (`gate.decide`) against the model it would
replace, re-scored on the candidate's holdout: a refused candidate leaves the previous model
serving. With the spec's `training.refit`, a passed candidate serves refitted on its whole window
(`refit.refit_window`), and later candidates are judged against the candidate it came from, as
the loop does. After each partition's data (with its labels) lands, a policy may retrain on the
window ending there; the model it then serves is scored on the next partition. After the last
scored partition no policy retrains: that model would serve nothing, so neither `retrains` nor the
CPU seconds count it. Partitions are the spec's keys at its grain (daily, weekly or monthly).

Policies: `static` never retrains; `periodic` retrains after every scored partition but the last;
`scheduled` on the spec's `retrain_cron`; `triggered` when `retrain_policy` finds evidence of harm
(the rules the sensors apply, with the spec's cooldown).

A policy's CPU seconds are its own work only: before any policy's clock starts, `warm_up` runs the
timed code paths once (the first model, its refit, a candidate judged against it, scoring), so the
process's one-time costs (imports, CatBoost's first fit) fall in no policy's figure whatever the
order of the policies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.schedule import retrain_due
from ct_assets.lib.core.spec import PartitionSpec, PipelineSpec
from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.model import gate, metrics, model_training
from ct_assets.lib.model.calibration import Calibration, fit_calibrated
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.paired_evidence import paired_scores
from ct_assets.lib.model.refit import refit_window
from ct_assets.lib.model.steps import feature_importance
from ct_assets.lib.model.training_set import SPLIT_COLUMN, assign_splits, available_partitions
from ct_assets.lib.monitor import backtest_builds as builds
from ct_assets.lib.monitor import measures as monitoring
from ct_assets.lib.monitor.retrain_policy import (
    Decision,
    Expectation,
    PartitionSignal,
    drift_decision,
    holdout_partitions,
    performance_decision,
)

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pandas as pd
    from catboost import CatBoostClassifier

POLICIES = ("static", "periodic", "scheduled", "triggered")
# segments smaller than this are left out of the gate's per-segment figures (as in the evaluation)
SEGMENT_MIN_ROWS = 30


def partition_keys(partitions: PartitionSpec, first: str, last: str) -> list[str]:
    """The spec's partition keys (Dagster's: days; weeks from Sunday; months from the 1st) that
    start between `first` and `last`, both included, and before the spec's end."""
    start = partitions.start
    if partitions.grain == "weekly":
        start += timedelta(days=(6 - start.weekday()) % 7)
    elif partitions.grain == "monthly" and start.day != 1:
        start = partition_window(partitions, start.isoformat())[1].date()
    keys: list[str] = []
    current = start
    stop = min(date.fromisoformat(last), partitions.end - timedelta(days=1) if partitions.end else date.max)
    while current <= stop:
        if current.isoformat() >= first:
            keys.append(current.isoformat())
        current = partition_window(partitions, current.isoformat())[1].date()
    return keys


def build_features(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    landing: Path,
    keys: list[str],
    progress: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Run the data layer's library steps for the partitions that are new to the backtest
    warehouse or whose landing files, spec or SQL changed since they were built (`backtest_builds`);
    the others are reused. Returns each partition built, with why."""
    wanted = builds.current_builds(spec, landing, keys)
    rebuilt = builds.stale(wanted, builds.recorded_builds(con, spec), set(available_partitions(con, spec)))
    if rebuilt:
        for table in spec.context_tables:
            data_steps.load_context(con, spec, table, context_file(landing, spec.name, table))
    for key in keys:
        if key in rebuilt:
            data_steps.ingest_raw(con, spec, key, partition_files(landing, spec.name, key))
            data_steps.validate_partition(con, spec, key)
            for group in groups(spec):
                data_steps.materialize_group(con, spec, group, key)
            data_steps.build_features(con, spec, key)
            builds.record(con, spec, key, wanted[key])
        if progress:
            progress(key)
    return rebuilt


@dataclass
class Served:
    """A model and what it promised on its own holdout."""

    model: CatBoostClassifier
    # what the gate compares later candidates with: the model itself, or a refit's candidate
    judged: CatBoostClassifier
    trained_on: str
    window: list[str]
    importance: dict[str, float]
    expectation: Expectation
    threshold: float = 0.5
    reference: monitoring.Reference | None = None
    calibration: Calibration | None = None


@dataclass
class PolicyRun:
    name: str
    scored: list[dict[str, Any]] = field(default_factory=list)  # one row per scored partition
    retrains: int = 0  # candidates trained after the first model (none after the last partition)
    refused: int = 0  # of those, refused by the gate
    cpu_seconds: float = 0.0  # training, gate scoring and partition scoring
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        aucs = [d["auc"] for d in self.scored if d["auc"] is not None]
        return {
            "partitions": len(self.scored),
            "mean_auc": round(mean(aucs), 4) if aucs else None,
            "mean_log_loss": round(mean(d["log_loss"] for d in self.scored), 4) if self.scored else None,
            "mean_ece": round(mean(d["ece"] for d in self.scored), 4) if self.scored else None,
            "retrains": self.retrains,
            "refused": self.refused,
            "cpu_s": round(self.cpu_seconds, 1),
        }


class Backtest:
    """Features, profiles and models for one pipeline, shared by all policies."""

    def __init__(
        self,
        spec: PipelineSpec,
        frames: dict[str, pd.DataFrame],
        clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.spec = spec
        self.keys = sorted(frames)
        self.frames = frames
        self.layout = FeatureLayout.of(spec)
        self.clock = clock  # CPU seconds of this process
        # the periodic policy over the first scored partition, run once before any policy is timed
        self.warm_up_run: PolicyRun | None = None
        self._views: dict[str, Any] = {}

    def view(self, key: str) -> Any:
        if key not in self._views:
            self._views[key] = monitoring.partition_profile(self.frames[key], self.spec)
        return self._views[key]

    def window(self, key: str) -> list[str]:
        upto = [k for k in self.keys if k <= key]
        return upto[-self.spec.training.window_partitions :]

    def _label_rate(self, keys: list[str]) -> float:
        column = self.spec.label.column
        rows = sum(len(self.frames[k]) for k in keys)
        return sum(float(self.frames[k][column].astype(float).sum()) for k in keys) / max(rows, 1)

    def _evaluation(
        self, model: Any, holdout: pd.DataFrame, threshold: float
    ) -> tuple[gate.Evaluation, np.ndarray]:
        """The model's evaluation on the holdout, and its scores there."""
        y = model_training.labels(holdout, self.spec)
        p = model_training.score(model, holdout, self.layout)
        evaluation = gate.Evaluation(
            metrics.compute(y, p, threshold),
            metrics.by_segment(holdout, y, p, self.spec.segments, threshold, SEGMENT_MIN_ROWS),
        )
        return evaluation, p

    def candidate(
        self, key: str, serving: Served | None, run: PolicyRun, with_reference: bool
    ) -> tuple[Served, gate.Verdict]:
        """Train and calibrate on the window ending at `key`, and judge the candidate with the gate
        against `serving` re-scored on the candidate's holdout."""
        import pandas as pd

        keys = self.window(key)
        splits = assign_splits(self.spec, keys)
        part = {name: pd.concat([self.frames[k] for k in split_keys]) for name, split_keys in splits.items()}
        started = self.clock()
        model, fitted = fit_calibrated(
            part["train"], part["validation"], self.spec, self.layout, splits["validation"]
        )
        validation = part["validation"]
        threshold = metrics.best_f1_threshold(
            model_training.labels(validation, self.spec), model_training.score(model, validation, self.layout)
        )
        holdout = part["holdout"]
        y = model_training.labels(holdout, self.spec)
        ours, p = self._evaluation(model, holdout, threshold)
        theirs, paired = None, None
        if serving:
            theirs, q = self._evaluation(serving.judged, holdout, serving.threshold)
            paired = paired_scores(holdout, y, p, q, self.spec.segments)
        prior = self._label_rate(splits["train"] + splits["validation"])
        verdict = gate.decide(ours, theirs, self.spec.gate, prior, paired)
        run.cpu_seconds += self.clock() - started
        reference = None
        if with_reference:
            views = [self.view(k) for k in keys]
            reference = monitoring.reference(views, self.spec, self._label_rate(keys))
        expectation = Expectation(
            ours.overall.auc,
            ours.overall.rows,
            ours.overall.positive_rate,
            self._label_rate(keys),
            holdout_partitions(metrics.by_partition(holdout, y, p, threshold)),
        )
        importance = feature_importance(model, self.layout)
        served = Served(model, model, key, keys, importance, expectation, threshold, reference, fitted)
        return served, verdict

    def serve(self, candidate: Served, run: PolicyRun) -> Served:
        """The model that serves once a candidate has passed the gate: with `training.refit`, the
        candidate refitted on its whole window, judged later as the candidate."""
        if not self.spec.training.refit:
            return candidate
        import pandas as pd

        splits = assign_splits(self.spec, candidate.window)
        window = pd.concat(
            [self.frames[k].assign(**{SPLIT_COLUMN: name}) for name, keys in splits.items() for k in keys]
        )
        started = self.clock()
        model, fitted = refit_window(candidate.model, candidate.calibration, window, self.spec, self.layout)
        run.cpu_seconds += self.clock() - started
        importance = feature_importance(model, self.layout)
        return replace(
            candidate, model=model, importance=importance, calibration=fitted, judged=candidate.model
        )

    def _score(self, served: Served, key: str, run: PolicyRun) -> dict[str, Any]:
        frame = self.frames[key]
        started = self.clock()
        scores = model_training.score(served.model, frame, self.layout)
        figures = metrics.compute(model_training.labels(frame, self.spec), scores, served.threshold)
        run.cpu_seconds += self.clock() - started
        return {
            "partition": key,
            "rows": figures.rows,
            "auc": figures.auc,
            "log_loss": figures.log_loss,
            "ece": figures.ece,
            "label_rate": figures.positive_rate,
            "mean_score": float(scores.mean()) if len(scores) else None,
            "model_trained_on": served.trained_on,
        }

    def _signal(self, served: Served, key: str, row: dict[str, Any]) -> PartitionSignal:
        assert served.reference is not None
        frame = self.frames[key]
        result = monitoring.score_drift(
            served.reference, self.view(key), len(frame), self.spec, served.importance
        )
        return PartitionSignal(
            key,
            result.share,
            list(result.drifted),
            row["auc"],
            row["rows"],
            row["label_rate"],
            row["mean_score"],
        )

    def _triggered(self, signals: list[PartitionSignal], served: Served) -> Decision | None:
        for decide in (performance_decision, drift_decision):
            decision = decide(signals, served.expectation, self.spec.monitoring)
            if decision.retrain:
                return decision
        return None

    def warm_up(self, first: str) -> PolicyRun:
        """Once per backtest: the periodic policy from `first` over two partitions (one retrain
        between them; its figures discarded), so every code path a policy times has run in this
        process before any policy's clock starts."""
        if self.warm_up_run is None:
            self.warm_up_run = self._walk("periodic", first, [k for k in self.keys if k > first][:2], None)
        return self.warm_up_run

    def run(self, policy: str, first: str, on_key: Callable[[str, str], None] | None = None) -> PolicyRun:
        """Serve from `first` on; each later partition is scored, then the policy may retrain."""
        self.warm_up(first)
        return self._walk(policy, first, [k for k in self.keys if k > first], on_key)

    def _walk(
        self, policy: str, first: str, keys: list[str], on_key: Callable[[str, str], None] | None
    ) -> PolicyRun:
        run = PolicyRun(policy)
        triggered = policy == "triggered"
        first_candidate, _ = self.candidate(first, None, run, with_reference=triggered)
        served = self.serve(first_candidate, run)
        signals: list[PartitionSignal] = []
        since_request: int | None = None
        cooldown = self.spec.monitoring.cooldown_partitions
        for key in keys:
            row = self._score(served, key, run)
            run.scored.append(row)
            reason = None
            if key == keys[-1]:
                pass  # a model trained now would serve no scored partition
            elif policy == "periodic":
                reason = "every partition"
            elif policy == "scheduled" and retrain_due(self.spec, key):
                reason = "schedule"
            elif triggered:
                signals.append(self._signal(served, key, row))
                since_request = None if since_request is None else since_request + 1
                decision = self._triggered(signals, served)
                if decision and (since_request is None or since_request >= cooldown):
                    reason, since_request = decision.reason, 0
            if reason is not None:
                candidate, verdict = self.candidate(key, served, run, with_reference=triggered)
                run.retrains += 1
                if verdict.passed:
                    served, signals = self.serve(candidate, run), []
                    since_request = None  # a cooldown holds for the model it was asked about
                else:
                    run.refused += 1
                if triggered:
                    outcome = "served" if verdict.passed else f"refused: {'; '.join(verdict.reasons)[:160]}"
                    run.reasons.append(f"{key}: {reason} -> {outcome}")
            if on_key:
                on_key(policy, key)
        return run


def load_frames(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, keys: list[str]
) -> dict[str, pd.DataFrame]:
    frame = con.execute(partition_view_sql(spec.name, "features", keys)).df()
    return {key: rows.reset_index(drop=True) for key, rows in frame.groupby("_partition_key")}


def report(spec: PipelineSpec, runs: list[PolicyRun]) -> dict[str, Any]:
    """The JSON summary: `{"pipeline": ..., "policies": {name: summary}}`."""
    return {"pipeline": spec.name, "policies": {run.name: run.summary() for run in runs}}


def plot(runs: list[PolicyRun], path: Path) -> Path:
    """Rolling mean (over 7 partitions) of each scored partition's AUC for every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    figure, axis = plt.subplots(figsize=(11, 4.5))
    for run in runs:
        series = pd.Series(
            [d["auc"] for d in run.scored], index=[d["partition"] for d in run.scored], dtype=float
        )
        summary = run.summary()
        label = f"{run.name} (mean {summary['mean_auc']:.3f}, {run.retrains} retrains)"
        axis.plot(series.index, series.rolling(7, min_periods=1).mean(), label=label)
    axis.set(title="Serving model's AUC on the next partition (rolling mean of 7)", ylabel="AUC")
    ticks = runs[0].scored[:: max(1, len(runs[0].scored) // 12)]
    axis.set_xticks([d["partition"] for d in ticks])
    axis.tick_params(axis="x", rotation=45)
    axis.legend()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path
