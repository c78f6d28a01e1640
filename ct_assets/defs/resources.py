"""Resources: the only way assets reach the world (the warehouse file and the landing folder)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ct_assets.lib.core import alerts, settings
from ct_assets.lib.core.audit import AuditLog, log_for
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import landing
from ct_assets.lib.data.profiles import ProfileFiles
from ct_assets.lib.model.registry import Registry

if TYPE_CHECKING:
    import duckdb

# Assets that write the DuckDB file share this pool; dagster.yaml limits it to one at a time.
WAREHOUSE_POOL = "duckdb_warehouse"


class Warehouse(dg.ConfigurableResource):
    """The DuckDB warehouse file. One writer at a time: every asset using it is in WAREHOUSE_POOL."""

    path: str
    threads: int = 2

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = open_connection(self.path, threads=self.threads)
        try:
            yield con
        finally:
            con.close()


class LandingZone(dg.ConfigurableResource):
    """The folder where landing files arrive: `<root>/<pipeline>/<partition_key>.csv|.parquet`."""

    root: str

    def partition_files(self, pipeline: str, partition_key: str) -> list[Path]:
        return landing.partition_files(Path(self.root), pipeline, partition_key)

    def context_file(self, pipeline: str, table: str) -> Path:
        return landing.context_file(Path(self.root), pipeline, table)

    def landed_keys(self, pipeline: str) -> list[str]:
        return landing.landed_partition_keys(Path(self.root), pipeline)


class ModelRegistry(dg.ConfigurableResource):
    """Model versions, datasets, the champion alias and the audit log: one folder per pipeline.
    The audit log is `<audit_home>/audit.jsonl` when the root is inside `audit_home`, else the root's own."""

    root: str
    audit_home: str = ""

    def for_pipeline(self, pipeline: str) -> Registry:
        return Registry(Path(self.root), pipeline, Path(self.audit_home) if self.audit_home else None)

    def audit_log(self) -> AuditLog:
        return log_for(Path(self.root), Path(self.audit_home) if self.audit_home else None)


class ProfileStore(dg.ConfigurableResource):
    """whylogs profiles, one file per pipeline, kind and partition (or model version)."""

    root: str

    def for_pipeline(self, pipeline: str) -> ProfileFiles:
        return ProfileFiles(Path(self.root), pipeline)


class SnapshotFolder(dg.ConfigurableResource):
    """Where online snapshots are published for serving: `<root>/<pipeline>/`."""

    root: str

    def folder(self, pipeline: str) -> Path:
        return Path(self.root) / pipeline


_CONFIG_FIELDS = tuple(settings.Config.__dataclass_fields__)


class HomeFolder(dg.ConfigurableResource):
    """The home folder's layout (`settings.Config`) for steps that reach several of its places at
    once: a rollout (slots, proxy, online snapshot, prediction log, BentoML store, audit log)."""

    home: str
    pipeline_dirs: list[str]
    warehouse: str
    landing: str
    registry: str
    dagster_home: str
    bentoml_home: str

    @classmethod
    def of(cls, config: settings.Config) -> HomeFolder:
        folders = {name: str(getattr(config, name)) for name in _CONFIG_FIELDS if name != "pipeline_dirs"}
        return cls(**folders, pipeline_dirs=[str(p) for p in config.pipeline_dirs])

    def config(self) -> settings.Config:
        folders = {name: Path(getattr(self, name)) for name in _CONFIG_FIELDS if name != "pipeline_dirs"}
        return settings.Config(**folders, pipeline_dirs=tuple(Path(p) for p in self.pipeline_dirs))


class PredictionLog(dg.ConfigurableResource):
    """The folder serving appends prediction logs to: `<root>/<pipeline>/<date>/<slot>-<pid>.arrows`."""

    root: str


class AlertSink(dg.ConfigurableResource, ABC):
    """Where alerts go. Tests and deployments choose the sink; the code only calls `send`."""

    @abstractmethod
    def send(self, alert: alerts.Alert) -> None: ...

    def notify(
        self, spec: PipelineSpec, tier: alerts.Tier, partition: str | None, cause: str, action: str
    ) -> alerts.Alert:
        """Send an alert of the pipeline to the owner of its tier."""
        alert = alerts.Alert(
            tier, spec.name, partition, cause, action, spec.monitoring.owners.get(tier, spec.owner)
        )
        self.send(alert)
        return alert


class JsonlAlertSink(AlertSink):
    """Alerts appended to a JSON-lines file (the embedded default)."""

    path: str

    def send(self, alert: alerts.Alert) -> None:
        alerts.write_jsonl(Path(self.path), alert)


class WebhookAlertSink(AlertSink):
    """Alerts POSTed as JSON to a webhook (chat, pager); also kept in a JSON-lines file."""

    url: str
    path: str
    timeout_seconds: float = 5.0

    def send(self, alert: alerts.Alert) -> None:
        alerts.write_jsonl(Path(self.path), alert)
        alerts.post_webhook(self.url, alert, timeout=self.timeout_seconds)


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources for the embedded default, located by the environment's `settings.Config`."""
    config = settings.config()
    return {
        "warehouse": Warehouse(path=str(config.warehouse)),
        "landing": LandingZone(root=str(config.landing)),
        "registry": ModelRegistry(root=str(config.registry), audit_home=str(config.audit_home)),
        "home": HomeFolder.of(config),
        "profiles": ProfileStore(root=str(config.profiles)),
        "alerts": default_alert_sink(config),
        "snapshots": SnapshotFolder(root=str(config.online)),
        "prediction_log": PredictionLog(root=str(config.prediction_log)),
    }


def default_alert_sink(config: settings.Config) -> AlertSink:
    """A webhook sink when `CT_ALERT_WEBHOOK` is set, else the JSON-lines file in the home folder."""

    path = str(config.alerts_file)
    url = os.environ.get("CT_ALERT_WEBHOOK")
    # EnvVar: the UI and the run storage show the variable's name, never the URL (it carries a secret)
    if url:
        return WebhookAlertSink(url=dg.EnvVar("CT_ALERT_WEBHOOK"), path=path)
    return JsonlAlertSink(path=path)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
