"""Headless replay: walk partitions (days, weeks or months, as the spec's grain says) through the
real asset graph on a persistent Dagster instance, retraining on the pipeline's schedule, and
report what happened on each. A demo source lands its partitions first; a file source replays the
partitions already landed (`missing_landing` names the ones that are not)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg

from ct_assets.app import code_location
from ct_assets.app.demo import land_days, materialize_context, materialize_partition
from ct_assets.lib.core import names, settings
from ct_assets.lib.core.schedule import retrain_due
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import connection, partition_view_sql
from ct_assets.lib.data.landing import landed_partition_keys
from ct_assets.lib.model import model_training
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.model.training_set import available_partitions

TRAINING_FAILED = "training failed"
GRAIN_UNITS = {"daily": "day", "weekly": "week", "monthly": "month"}


@dataclass(frozen=True)
class ReplayDay:
    """One replayed partition. `champion` is the model serving when the partition arrived and
    `champion_auc` its AUC there, before any retrain; a retrain that promoted names the new
    champion in `note` ("promoted v0004")."""

    partition: str
    rows: int
    quarantined: int
    champion: str
    champion_auc: float | None
    retrained: bool
    promoted: bool
    note: str


def champion_auc_on(
    spec: PipelineSpec, registry: Registry, partition_key: str, config: Config
) -> float | None:
    """The current champion's AUC on one partition's features (before any retraining)."""
    from sklearn.metrics import roc_auc_score

    record = registry.champion()
    if record is None:
        return None
    with connection(config.warehouse, read_only=True) as con:
        frame = con.execute(partition_view_sql(spec.name, "features", [partition_key])).df()
    y = model_training.labels(frame, spec)
    if len(set(y)) < 2:
        return None
    model = load_model(registry.models, record.model_sha256)
    return float(roc_auc_score(y, model_training.score(model, frame, record.layout)))


def retrain(
    spec: PipelineSpec, partition_key: str, instance: dg.DagsterInstance, reason: str
) -> tuple[bool, str]:
    """Run training_set -> candidate -> evaluation -> champion as of a partition, tagged as the
    replay's with `reason` (as a sensor tags its retrain runs); (promoted, note)."""
    assets = code_location.pipeline_assets(spec.name, frozenset(names.RETRAIN_ASSETS))
    # a refused gate fails the run on purpose; the table says why, so keep the console quiet
    silent = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    run_config = {**silent, **names.training_run_config(spec.name, partition_key)}
    tags = {"ct/trigger": "replay", "ct/partition": partition_key, "ct/reason": reason}
    result = dg.materialize(
        assets,
        instance=instance,
        resources=code_location.resources(),
        run_config=run_config,
        tags=tags,
        raise_on_error=False,
    )
    promoted = any(
        m.asset_key.path[-1] == "champion"
        for m in (e.materialization for e in result.get_asset_materialization_events())
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    if promoted:
        return True, "promoted"
    if "gate" in checks and not checks["gate"].passed:
        return False, f"gate refused: {checks['gate'].description}"
    failures = [_root_cause(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
    return False, f"{TRAINING_FAILED}: {failures[0] if failures else 'see the run in the UI'}"


def _root_cause(error: object) -> str:
    """The innermost error message of a serialized Dagster error, without its exception's class
    path (`pkg.module.SomeError: ` says nothing to the reader of the table)."""
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    line = str(getattr(error, "message", error)).strip().splitlines()[-1]
    return re.sub(r"^[\w.]+(Error|Exception): ", "", line)


def newest_learned(registry: Registry) -> str | None:
    """The newest partition the champion learned from (any split: a refit trains on them all)."""
    record = registry.champion()
    if record is None:
        return None
    return max((key for keys in record.partitions.values() for key in keys), default=None)


def missing_landing(spec: PipelineSpec, keys: list[str], landing_root: Path) -> list[str]:
    """The partitions of a file source with no landing file (a demo source lands its own)."""

    if spec.source.kind == "demo":
        return []
    landed = set(landed_partition_keys(landing_root, spec.name))
    return [key for key in keys if key not in landed]


def _land(spec: PipelineSpec, keys: list[str], landing_root: Path) -> None:
    if spec.source.kind == "demo":
        land_days(spec, keys, landing_root)


def replay(
    spec: PipelineSpec,
    days: list[str],
    instance: dg.DagsterInstance,
    on_day: Callable[[ReplayDay], None] | None = None,
    config: Config | None = None,
) -> list[ReplayDay]:
    """Land (demo sources), ingest and (on schedule, or to bootstrap a first champion) retrain,
    partition by partition, in the home folder of `config` (default: the environment's)."""
    config = config or settings.config()
    registry = Registry(config.registry, spec.name, config.audit_home)
    _land(spec, days[:1], config.landing)
    if spec.context_tables:
        materialize_context(spec, instance)
    needed = spec.training.validation_partitions + spec.training.holdout_partitions + 1
    results = []
    for day in days:
        _land(spec, [day], config.landing)
        counts = materialize_partition(spec, day, instance)
        scored_by = registry.champion_version() or "-"
        auc = champion_auc_on(spec, registry, day, config) if counts.succeeded else None
        with connection(config.warehouse, read_only=True) as con:
            history = len([k for k in available_partitions(con, spec) if k <= day])
        bootstrap = registry.champion_version() is None and history >= needed
        retrained, promoted, note = False, False, "" if counts.succeeded else "data run failed"
        if counts.succeeded and (bootstrap or (retrain_due(spec, day) and history >= needed)):
            known = newest_learned(registry)
            if known is not None and day <= known:
                # A model as of an older partition knows less than the champion: replaying an
                # older stretch must never move the champion back in time.
                note = f"not retrained: champion {registry.champion_version()} learned up to {known}"
            else:
                reason = "first model" if bootstrap else f"retrain_cron {spec.training.retrain_cron}"
                promoted, note = retrain(spec, day, instance, reason)
                if promoted:
                    note = f"promoted {registry.champion_version()}"
                retrained = not note.startswith(TRAINING_FAILED)
        day_result = ReplayDay(
            day,
            counts.rows,
            counts.quarantined,
            scored_by,
            auc,
            retrained,
            promoted,
            note,
        )
        results.append(day_result)
        if on_day:
            on_day(day_result)
    return results


def write_outputs(results: list[ReplayDay], folder: Path, stem: str, grain: str) -> tuple[Path, Path]:
    """The table as CSV and a plot of the champion's AUC per partition (named by the `grain`:
    day, week or month), marking retrains and promotions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = folder / f"{stem}.csv", folder / f"{stem}.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(results[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in results)
    figure, axis = plt.subplots(figsize=(10, 4))
    dates = [r.partition for r in results]
    unit = GRAIN_UNITS[grain]
    axis.plot(dates, [r.champion_auc for r in results], marker=".", label=f"champion AUC on the {unit}")
    for r in results:
        if r.retrained:
            axis.axvline(r.partition, color="green" if r.promoted else "red", alpha=0.3)
    title = f"{stem}: champion AUC per {unit} (green: promoted retrain, red: refused)"
    axis.set(title=title, xlabel=f"{grain} partition", ylabel="AUC")
    axis.set_xticks(dates[:: max(1, len(dates) // 12)])
    axis.tick_params(axis="x", rotation=45)
    figure.savefig(png_path, dpi=90, bbox_inches="tight", metadata={"Title": title})
    plt.close(figure)
    return csv_path, png_path
