"""Retraining-policy backtest: replay a stretch of partitions through the same library code under
several policies and measure what each buys in accuracy and costs in retraining.

Every policy starts from the same first model (trained on the first training window). Models are
trained and calibrated as the candidate step does (`calibration.fit_calibrated`). After each
day's data (with its labels) lands, a policy may retrain on the window ending that day; the model
it then serves is scored on the next day's data. No gate is applied here, so the comparison is
about when to retrain, not whether a candidate is good enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.schedule import retrain_due
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.model import model_training
from ct_assets.lib.model.calibration import fit_calibrated
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.training_set import assign_splits
from ct_assets.lib.monitor import measures as monitoring
from ct_assets.lib.monitor.retrain_policy import PartitionSignal, drift_decision, performance_decision

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

POLICIES = ("static", "periodic", "periodic_weekly", "triggered")


def build_features(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    landing: Path,
    days: list[str],
    progress: Callable[[str], None] | None = None,
) -> None:
    """Run the data layer's library steps for the days not yet in the backtest warehouse."""
    from ct_assets.lib.model.training_set import available_partitions

    done = set(available_partitions(con, spec))
    if len(done) == 0:
        for table in spec.context_tables:
            data_steps.load_context(con, spec, table, context_file(landing, spec.name, table))
    for day in days:
        if day not in done:
            data_steps.ingest_raw(con, spec, day, partition_files(landing, spec.name, day))
            data_steps.validate_partition(con, spec, day)
            for group in groups(spec):
                data_steps.materialize_group(con, spec, group, day)
            data_steps.build_features(con, spec, day)
        if progress:
            progress(day)


@dataclass
class Served:
    model: Any
    trained_on: str
    window: list[str]
    importance: dict[str, float]
    holdout_auc: float | None
    reference: monitoring.Reference | None = None


@dataclass
class PolicyRun:
    name: str
    daily: list[dict[str, Any]] = field(default_factory=list)
    retrains: int = 0
    cpu_seconds: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        aucs = [d["auc"] for d in self.daily if d["auc"] is not None]
        losses = [d["log_loss"] for d in self.daily]
        return {
            "policy": self.name,
            "days": len(self.daily),
            "mean_daily_auc": sum(aucs) / len(aucs) if aucs else None,
            "mean_daily_log_loss": sum(losses) / len(losses) if losses else None,
            "retrains": self.retrains,
            "training_cpu_seconds": round(self.cpu_seconds, 1),
        }


class Backtest:
    """Features, profiles and models for one pipeline, shared by all policies."""

    def __init__(self, spec: PipelineSpec, frames: dict[str, pd.DataFrame]) -> None:
        self.spec = spec
        self.days = sorted(frames)
        self.frames = frames
        self.layout = FeatureLayout.of(spec)
        self._views: dict[str, Any] = {}

    def view(self, day: str) -> Any:
        if day not in self._views:
            self._views[day] = monitoring.partition_profile(self.frames[day], self.spec)
        return self._views[day]

    def window(self, day: str) -> list[str]:
        upto = [d for d in self.days if d <= day]
        return upto[-self.spec.training.window_partitions :]

    def train(self, day: str, run: PolicyRun, with_reference: bool) -> Served:
        import pandas as pd

        from ct_assets.lib.model.metrics import compute
        from ct_assets.lib.model.steps import feature_importance

        keys = self.window(day)
        splits = assign_splits(self.spec, keys)
        part = {name: pd.concat([self.frames[k] for k in split_keys]) for name, split_keys in splits.items()}
        started = time.process_time()
        model, _ = fit_calibrated(
            part["train"], part["validation"], self.spec, self.layout, splits["validation"]
        )
        run.cpu_seconds += time.process_time() - started
        run.retrains += 1
        holdout = part["holdout"]
        scores = model_training.score(model, holdout, self.layout)
        auc = compute(model_training.labels(holdout, self.spec), scores, 0.5).auc
        reference = None
        if with_reference:
            rates = [float(self.frames[k][self.spec.label.column].astype(float).mean()) for k in keys]
            reference = monitoring.reference([self.view(k) for k in keys], self.spec, sum(rates) / len(rates))
        return Served(model, day, keys, feature_importance(model, self.layout), auc, reference)

    def run(self, policy: str, first_day: str, on_day: Callable[[str, str], None] | None = None) -> PolicyRun:
        """Serve from `first_day` on; each later day is scored, then the policy may retrain."""
        from ct_assets.lib.model.metrics import compute

        run = PolicyRun(policy)
        triggered = policy == "triggered"
        served = self.train(first_day, run, with_reference=triggered)
        signals: list[PartitionSignal] = []
        last_request: int | None = None
        rules = self.spec.monitoring
        scoring_days = [d for d in self.days if d > first_day]
        for index, day in enumerate(scoring_days):
            frame = self.frames[day]
            scores = model_training.score(served.model, frame, self.layout)
            metrics = compute(model_training.labels(frame, self.spec), scores, 0.5)
            run.daily.append(
                {
                    "partition": day,
                    "auc": metrics.auc,
                    "log_loss": metrics.log_loss,
                    "model_trained_on": served.trained_on,
                }
            )
            retrain, reason = False, ""
            if policy == "periodic":
                retrain, reason = True, "every partition"
            elif policy == "periodic_weekly":
                retrain, reason = retrain_due(self.spec, day), "schedule"
            elif triggered and served.reference is not None:
                result = monitoring.score_drift(
                    served.reference, self.view(day), len(frame), self.spec, served.importance
                )
                signals.append(PartitionSignal(day, result.share, list(result.drifted), metrics.auc))
                cooled = last_request is None or index - last_request >= rules.cooldown_partitions
                for decide in (performance_decision, drift_decision):
                    decision = decide(signals, served.holdout_auc, rules)
                    if decision.retrain and cooled:
                        retrain, reason = True, decision.reason
                        break
            if retrain:
                served = self.train(day, run, with_reference=triggered)
                if triggered:
                    signals, last_request = [], index
                    run.reasons.append(f"{day}: {reason}")
            if on_day:
                on_day(policy, day)
        return run


def load_frames(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, days: list[str]
) -> dict[str, pd.DataFrame]:
    from ct_assets.lib.core.warehouse import partition_view_sql

    frame = con.execute(partition_view_sql(spec.name, "features", days)).df()
    return {day: rows.reset_index(drop=True) for day, rows in frame.groupby("_partition_key")}


def plot(runs: list[PolicyRun], path: Path) -> Path:
    """Seven-day rolling mean of the daily AUC for every policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    figure, axis = plt.subplots(figsize=(11, 4.5))
    for run in runs:
        series = pd.Series(
            [d["auc"] for d in run.daily], index=[d["partition"] for d in run.daily], dtype=float
        )
        summary = run.summary()
        label = f"{run.name} (mean {summary['mean_daily_auc']:.3f}, {run.retrains} retrains)"
        axis.plot(series.index, series.rolling(7, min_periods=1).mean(), label=label)
    axis.set(title="Serving model's AUC on the next day (7-day rolling mean)", ylabel="AUC")
    ticks = runs[0].daily[:: max(1, len(runs[0].daily) // 12)]
    axis.set_xticks([d["partition"] for d in ticks])
    axis.tick_params(axis="x", rotation=45)
    axis.legend()
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
    return path
