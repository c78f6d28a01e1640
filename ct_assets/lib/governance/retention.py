"""Retention: delete raw data and prediction logs older than the spec's retention, and say so.

What goes, per raw partition whose window ended more than `retention.raw_days` ago:
- its landing files (the raw bytes, the only copy of the source),
- its rows in the warehouse tables `raw` and `quarantine` (row-level copies of the raw data).

What stays: `raw_tags` (the provenance: file names, sha256 and row counts, which is metadata and
what lineage and audits cite), and the curated layers `validated` and `features`, which training
windows and backtests read (they are not raw data and have no retention rule here).

Never deleted, whatever their age: the partitions a model still needs to be verifiable down to its
raw files, meaning the champion, the previous champion (a registry rollback target), the model
the deployment serves and the one it would roll back to. They are kept and listed with the reason.

Prediction logs live in day folders named by the wall-clock day serving wrote them; folders older
than `retention.prediction_log_days` are deleted. Every run that deletes anything appends one audit
entry per kind (what, how many rows and files, the cutoff and why).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.audit import AuditLog
from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, table_exists, table_name, transaction
from ct_assets.lib.data import landing
from ct_assets.lib.model.registry import Registry, RegistryError
from ct_assets.lib.serving.deployment_state import DeployState

if TYPE_CHECKING:
    import duckdb

RAW_TABLES = ("raw", "quarantine")


@dataclass
class RetentionReport:
    pipeline: str
    raw_cutoff: str
    log_cutoff: str
    expired: list[str] = field(default_factory=list)  # raw partitions past retention
    deleted_partitions: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # partition -> why it was kept anyway
    rows_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows
    files_deleted: list[dict[str, Any]] = field(default_factory=list)  # path, sha256, bytes
    log_folders_deleted: list[str] = field(default_factory=list)
    log_files_deleted: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def protected_models(registry: Registry, deploy_state: DeployState) -> dict[str, str]:
    """Model version -> why its training partitions must stay."""
    keep: dict[str, str] = {}
    champion = registry.champion_version()
    if champion:
        keep[champion] = "the champion"
        previous_champion = registry.previous_champion(champion)
        if previous_champion:  # the version `ct rollback` would move the champion back to
            keep.setdefault(previous_champion, "the previous champion (rollback target)")
    serving = deploy_state.active_bento
    previous = deploy_state.previous.bento if deploy_state.previous else None
    for role, bento in (("serving", serving), ("rollback target", previous)):
        if bento and ":" in bento:  # <pipeline>_service:<model version>
            keep.setdefault(bento.split(":", 1)[1], f"deployed ({role}: {bento})")
    return keep


def protected_partitions(registry: Registry, deploy_state: DeployState) -> dict[str, str]:
    """Partition key -> the first reason it is kept."""
    kept: dict[str, str] = {}
    for version, why in protected_models(registry, deploy_state).items():
        try:
            record = registry.get(version)
        except RegistryError:
            continue
        for keys in record.partitions.values():
            for key in keys:
                kept.setdefault(key, f"training data of {version}, {why}")
    return kept


def _raw_keys(con: duckdb.DuckDBPyConnection, spec: PipelineSpec) -> set[str]:
    keys: set[str] = set()
    for table in RAW_TABLES:
        if table_exists(con, spec.name, table):
            keys |= {
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT {PARTITION_COLUMN} FROM {table_name(spec.name, table)}"
                ).fetchall()
            }
    return keys


def _landing_paths(landing_root: Path, pipeline: str, key: str) -> list[Path]:
    folder = landing.pipeline_folder(landing_root, pipeline)
    paths = [folder / f"{key}{suffix}" for suffix in landing.FORMATS if (folder / f"{key}{suffix}").is_file()]
    if (folder / key).is_dir():
        paths += sorted(p for p in (folder / key).rglob("*") if p.is_file())
    return paths


def run_retention(
    spec: PipelineSpec,
    con: duckdb.DuckDBPyConnection,
    landing_root: Path,
    log_root: Path,
    registry: Registry,
    deploy_state: DeployState,
    audit_log: AuditLog,
    who: str,
    now: datetime | None = None,
    dry_run: bool = False,
) -> RetentionReport:
    """Delete what is past retention (or, with `dry_run`, only say what would go)."""
    rules = spec.retention
    clock = now or datetime.now(UTC)
    keys = _raw_keys(con, spec) | set(landing.landed_partition_keys(landing_root, spec.name))
    raw_cutoff = _raw_reference(spec, keys, clock) - timedelta(days=rules.raw_days)
    log_cutoff = (clock - timedelta(days=rules.prediction_log_days)).date()
    report = RetentionReport(spec.name, raw_cutoff.isoformat(), log_cutoff.isoformat(), dry_run=dry_run)
    report.expired = sorted(k for k in keys if partition_window(spec.partitions, k)[1] <= raw_cutoff)
    protected = protected_partitions(registry, deploy_state)
    report.kept = {k: protected[k] for k in report.expired if k in protected}
    report.deleted_partitions = [k for k in report.expired if k not in protected]
    _expire_raw(spec, con, landing_root, report)
    log_folders = _expired_log_folders(Path(log_root) / spec.name, log_cutoff)
    report.log_folders_deleted = [str(f) for f in log_folders]
    report.log_files_deleted = sum(1 for f in log_folders for p in f.rglob("*") if p.is_file())
    if not dry_run:
        for folder in log_folders:
            shutil.rmtree(folder)
        _audit(spec, report, audit_log, who)
    return report


def _raw_reference(spec: PipelineSpec, keys: set[str], clock: datetime) -> datetime:
    """Where raw retention is measured from: the newest partition's end, or now."""
    if spec.retention.measure_from == "latest_partition" and keys:
        return max(partition_window(spec.partitions, k)[1] for k in keys)
    return clock


def _expire_raw(
    spec: PipelineSpec, con: duckdb.DuckDBPyConnection, landing_root: Path, report: RetentionReport
) -> None:
    """Count (and, unless a dry run, delete) the doomed partitions' raw rows and landing files."""
    doomed = report.deleted_partitions
    files = [p for key in doomed for p in _landing_paths(landing_root, spec.name, key)]
    report.files_deleted = [
        {"path": str(p), "sha256": landing.sha256_of(p), "bytes": p.stat().st_size} for p in files
    ]
    if not doomed:
        return
    where = f"WHERE {PARTITION_COLUMN} IN ({', '.join(key_literal(k) for k in doomed)})"
    tables = [t for t in RAW_TABLES if table_exists(con, spec.name, t)]
    for table in tables:
        count = con.execute(f"SELECT count(*) FROM {table_name(spec.name, table)} {where}").fetchall()[0][0]
        report.rows_deleted[table] = int(count)
    if report.dry_run:
        return
    with transaction(con):
        for table in tables:
            con.execute(f"DELETE FROM {table_name(spec.name, table)} {where}")
    for path in files:
        path.unlink(missing_ok=True)
    for key in doomed:
        folder = landing.pipeline_folder(landing_root, spec.name) / key
        if folder.is_dir():
            shutil.rmtree(folder)


def _expired_log_folders(folder: Path, cutoff: date) -> list[Path]:
    """The prediction log's day folders written before `cutoff`."""
    expired = []
    for day_folder in sorted(folder.glob("*")):
        try:
            day = date.fromisoformat(day_folder.name)
        except ValueError:
            continue
        if day_folder.is_dir() and day < cutoff:
            expired.append(day_folder)
    return expired


def _audit(spec: PipelineSpec, report: RetentionReport, audit_log: AuditLog, who: str) -> None:
    """One audit entry for the raw deletions (and kept partitions), one for the log deletions."""
    rules = spec.retention
    if report.deleted_partitions or report.kept:
        audit_log.append(
            "retention_delete",
            who,
            f"raw partitions ended before {report.raw_cutoff[:10]} (retention.raw_days {rules.raw_days}, "
            f"measured from {rules.measure_from})",
            pipeline=spec.name,
            subject=f"{spec.name}/raw",
            component="retention",
            details={
                "partitions": report.deleted_partitions,
                "rows_deleted": report.rows_deleted,
                "files_deleted": report.files_deleted,
                "kept": report.kept,
                "cutoff": report.raw_cutoff,
            },
        )
    if report.log_folders_deleted:
        audit_log.append(
            "retention_delete",
            who,
            f"prediction logs written before {report.log_cutoff} (retention.prediction_log_days "
            f"{rules.prediction_log_days})",
            pipeline=spec.name,
            subject=f"{spec.name}/predictions",
            component="retention",
            details={
                "prediction_log_folders": report.log_folders_deleted,
                "files_deleted": report.log_files_deleted,
                "cutoff": report.log_cutoff,
            },
        )
