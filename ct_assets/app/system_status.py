"""One pipeline's state across the system, as typed records: what serves in each slot and its
share of traffic, the registry champion, the last gate verdict with its reasons, the last retrain
with its trigger and reason, the rows served, the last rollout step and why, and whether the
proxy, slots, daemon and webserver answer. `ct status` prints it and the live loop shows it; both
read the deployment's own record, the registry, the prediction log and the Dagster instance."""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from ct_assets.app.cli.common import prepared_dagster_home, registry, running_daemons, webserver_ports
from ct_assets.lib.core import names, settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.serving import prediction_log, proxy
from ct_assets.lib.serving.rollout import ROLLOUT_ACTIONS, Deployment


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def bento_version(tag: str | None) -> str | None:
    """The model version a bento tag names: `<service>:<version>-<sha>` -> `<version>-<sha>`."""
    return tag.split(":")[-1] if tag else None


class SlotStatus(_Status):
    """A slot: the bento it serves, its model version, its share of traffic, whether it answers
    and whether it is the active one."""

    bento: str | None
    share: float
    up: bool
    active: bool

    @computed_field  # in `ct status --json` beside the bento it is read from
    @property
    def version(self) -> str | None:
        return bento_version(self.bento)

    @property
    def serving(self) -> bool:
        """Up with a bento, and either active or given a share (a canary)."""
        return self.up and self.bento is not None and (self.active or self.share > 0)


class GateSummary(_Status):
    """The newest judged candidate: passed or refused, why, its holdout AUC, and the version that
    serves in its place when it passed (`refit`: the candidate trained again on its whole window)."""

    version: str
    passed: bool
    reasons: list[str]
    auc: float | None
    refit: str | None = None

    def refit_note(self) -> str:
        """ "; serves as its refit vN" when a refit serves in the candidate's place, else ""."""
        return f"; serves as its refit {self.refit}" if self.refit else ""


class RetrainSummary(_Status):
    """The newest retrain run: its status, what triggered it, as of which partition, and why."""

    run_id: str
    status: str
    trigger: str
    partition: str | None
    reason: str


class RolloutStep(_Status):
    """One step of a rollout as the audit log records it."""

    at: str
    action: str
    bento: str | None = None
    slot: str | None = None
    who: str | None = None
    why: str | None = None

    @classmethod
    def from_audit(cls, entry: dict[str, Any]) -> RolloutStep:
        """The step of a flat audit entry (`audit.flat`); other details are left out."""
        return cls(**{k: entry.get(k) for k in cls.model_fields})

    @property
    def version(self) -> str | None:
        return bento_version(self.bento)


class Health(_Status):
    proxy: bool
    proxy_supervised: bool
    daemon: bool
    webserver: bool


class SystemStatus(_Status):
    """Everything `ct status` reports; `model_dump(mode="json")` is `ct status --json`."""

    pipeline: str
    serving: dict[str, SlotStatus]
    champion: str | None
    rows_served: int
    last_gate: GateSummary | None
    last_retrain: RetrainSummary | None
    last_rollout: RolloutStep | None
    health: Health
    proxy_restarts: int


def answers(port: int) -> bool:
    """Something accepts connections on the local port."""
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def slots(spec: PipelineSpec, deploy: Deployment) -> dict[str, SlotStatus]:
    """Per slot: the bento it serves, its version, its share of traffic and whether it is up."""
    state = deploy.state()
    try:
        stats = proxy.server_stats(deploy.layout) if deploy.layout.socket.exists() else {}
    except OSError:
        stats = {}
    total = sum(int(s.get("weight") or 0) for s in stats.values())
    ports = {"blue": spec.serving.blue_port, "green": spec.serving.green_port}
    found = {}
    for slot, port in ports.items():
        bento = state.bento_in(slot)
        weight = int((stats.get(slot) or {}).get("weight") or 0)
        found[slot] = SlotStatus(
            bento=bento,
            share=round(weight / total, 3) if total else 0.0,
            up=answers(port),
            active=state.active == slot,
        )
    return found


def rows_served(spec: PipelineSpec) -> int:
    """Predictions in the pipeline's prediction log (every slot, every day). A file is read again
    only once it has changed, so a refreshing view reads only the files being written."""
    total = 0
    for path in prediction_log.log_files(settings.config().prediction_log / spec.name):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by retention since it was listed
            continue
        total += _rows_in(path, stat.st_size, stat.st_mtime_ns)
    return total


@functools.lru_cache(maxsize=4096)
def _rows_in(path: Path, size: int, modified_ns: int) -> int:
    """Rows in one log file at this size and modification time (the cache's key)."""
    table = prediction_log.read_table(path)
    return table.num_rows if table is not None else 0


def last_gate(versions: list[ModelVersion]) -> GateSummary | None:
    """The newest candidate the gate judged, from the registry's versions (oldest first); a refit
    carries its candidate's verdict, so it is named as the candidate's refit, not as judged."""
    evaluated = [r for r in versions if r.verdict is not None and r.refit_of is None]
    if not evaluated:
        return None
    record = evaluated[-1]
    auc = record.holdout_auc
    return GateSummary(
        version=record.version,
        passed=record.passed,
        reasons=list(record.verdict.reasons) if record.verdict else [],
        auc=None if auc is None else round(auc, 4),
        refit=next((r.version for r in versions if r.refit_of == record.version), None),
    )


def last_retrain(spec: PipelineSpec, instance: Any = None) -> RetrainSummary | None:
    """The newest retrain run in the Dagster instance (`instance`, else the home's, opened for
    this call): its status, trigger, partition and reason."""
    import dagster as dg  # ct's light commands do not load Dagster

    filters = dg.RunsFilter(job_name=names.job_name(spec.name, "retrain"))
    if instance is not None:
        found = instance.get_runs(filters=filters, limit=1)
    else:
        prepared_dagster_home()
        with dg.DagsterInstance.get() as opened:
            found = opened.get_runs(filters=filters, limit=1)
    if not found:
        return None
    run = found[0]
    return RetrainSummary(
        run_id=run.run_id,
        status=run.status.value,
        trigger=run.tags.get("ct/trigger", "manual"),
        partition=run.tags.get("ct/partition"),
        reason=run.tags.get("ct/reason", ""),
    )


def rollout_steps(deploy: Deployment) -> list[RolloutStep]:
    """The deployment's rollout steps from its audit log, oldest first."""
    return [RolloutStep.from_audit(e) for e in deploy.audit_log() if e.get("action") in ROLLOUT_ACTIONS]


def collect(
    spec: PipelineSpec, instance: Any = None, rollouts: list[RolloutStep] | None = None
) -> SystemStatus:
    """The status; `instance` is a Dagster instance the caller holds open (the live loop's), and
    `rollouts` the deployment's rollout steps when the caller has read them (else read here)."""
    from ct_assets.lib.serving import steps as deploy_steps  # numpy and pyarrow: only this command

    deploy = deploy_steps.deployment(spec, settings.config())
    models = registry(spec.name)
    versions = models.versions()
    champion_version = models.champion_version()
    rollouts = rollout_steps(deploy) if rollouts is None else rollouts
    proxy_health = deploy.health()["proxy"]
    return SystemStatus(
        pipeline=spec.name,
        serving=slots(spec, deploy),
        champion=champion_version,
        rows_served=rows_served(spec),
        last_gate=last_gate(versions),
        last_retrain=last_retrain(spec, instance),
        last_rollout=rollouts[-1] if rollouts else None,
        health=Health(
            proxy=answers(spec.serving.proxy_port),
            proxy_supervised=proxy_health["supervisor_pid"] is not None,
            daemon=bool(running_daemons(settings.config().dagster_home)),
            webserver=any(answers(port) for port in webserver_ports(settings.config().dagster_home)),
        ),
        proxy_restarts=max(0, int(proxy_health["starts"]) - 1),
    )
