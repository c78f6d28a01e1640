"""One pipeline's state across the system, as typed records: what serves in each slot and its
share of traffic (or when `ct deploy stop` stopped the deployment), the registry champion, the last
gate verdict with its reasons and what became of its refit, the last retrain (the newest run that
set out to train the candidate, whatever launched it) with its trigger and reason, the rows served,
the last rollout step and why, and whether the proxy, slots, daemon and webserver answer.
`ct status` prints it and the live loop shows it; both read the deployment's own record, the
registry, the prediction log and the Dagster instance."""

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

    @property
    def model_version(self) -> str | None:
        """The registry version of the model it serves (`v0003` of `svc:v0003-<sha>`)."""
        return model_of(self.bento)


def model_of(tag: str | None) -> str | None:
    """The registry version a bento tag's model has: `<service>:v0003-<sha>` -> `v0003`."""
    version = bento_version(tag)
    return version.split("-")[0] if version else None


class GateSummary(_Status):
    """The newest judged candidate: passed or refused, why, its holdout AUC, the version that
    replaces it when it passed (`refit`: the candidate trained again on its whole window), the model
    versions that serve now (`serving`, as `collect` found them; None when not looked up), and
    whether the refit's rollout was rolled back."""

    version: str
    passed: bool
    reasons: list[str]
    auc: float | None
    refit: str | None = None
    serving: list[str] | None = None
    refit_rolled_back: bool = False

    def refit_note(self) -> str:
        """What became of the refit: "; serves as its refit vN" when it serves (or when what serves
        was not looked up); else that it does not (or was rolled back) and what serves; "" without
        a refit."""
        if not self.refit:
            return ""
        if self.serving is None or self.refit.lower() in (v.lower() for v in self.serving):
            return f"; serves as its refit {self.refit}"
        what = "rolled back" if self.refit_rolled_back else "not serving"
        serving = ", ".join(self.serving) or "nothing"
        return f"; refit {self.refit}, {what}; {serving} {'serve' if len(self.serving) > 1 else 'serves'}"


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
    """Everything `ct status` reports; `model_dump(mode="json")` is `ct status --json`.
    `stopped_at`: when `ct deploy stop` stopped the deployment (None while it runs, or before one)."""

    pipeline: str
    serving: dict[str, SlotStatus]
    stopped_at: str | None = None
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
    stats = proxy.stats_if_up(deploy.layout)
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
            active=state.active == slot and bento is not None,
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
    """The newest run that set out to train the pipeline's candidate, whatever launched it (the
    retrain job, a sensor, `ct replay`, a materialization by hand), in the Dagster instance
    (`instance`, else the home's, opened for this call): its status, trigger, the partition it
    trained as of (when known) and reason."""
    import dagster as dg  # ct's light commands do not load Dagster

    if instance is not None:
        return _retrain_run(spec, instance)
    prepared_dagster_home()
    with dg.DagsterInstance.get() as opened:
        return _retrain_run(spec, opened)


def _retrain_run(spec: PipelineSpec, instance: Any) -> RetrainSummary | None:
    import dagster as dg

    candidate = dg.AssetKey(names.asset_path(spec.name, "candidate"))
    planned = instance.get_latest_planned_materialization_info(candidate)
    run = instance.get_run_by_id(planned.run_id) if planned else None
    if run is None:
        return None
    return RetrainSummary(
        run_id=run.run_id,
        status=run.status.value,
        trigger=run.tags.get("ct/trigger", "manual"),
        partition=run.tags.get("ct/partition") or _trained_as_of(spec, run.run_config),
        reason=run.tags.get("ct/reason", ""),
    )


def _trained_as_of(spec: PipelineSpec, run_config: Any) -> str | None:
    """The `as_of` partition a run's config gave the training set (`names.training_run_config`)."""
    op = (run_config or {}).get("ops", {}).get(names.op_name(spec.name, "training_set"), {})
    as_of = (op.get("config") or {}).get("as_of") if isinstance(op, dict) else None
    return as_of if isinstance(as_of, str) else None


def with_serving(
    gate: GateSummary | None, serving: dict[str, SlotStatus], rollouts: list[RolloutStep]
) -> GateSummary | None:
    """The gate's summary with what serves now, and whether its refit's rollout was rolled back
    (an automatic rollback of the refit, or a rollback after the refit was switched in)."""
    if gate is None:
        return None
    versions = sorted({s.model_version for s in serving.values() if s.serving and s.model_version})
    refit = (gate.refit or "").lower()
    touched = [
        i for i, step in enumerate(rollouts) if refit and (model_of(step.bento) or "").lower() == refit
    ]
    rolled_back = bool(touched) and any(step.action == "rollback" for step in rollouts[touched[-1] :])
    return gate.model_copy(update={"serving": versions, "refit_rolled_back": rolled_back})


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
    serving = slots(spec, deploy)
    return SystemStatus(
        pipeline=spec.name,
        serving=serving,
        stopped_at=deploy.state().stopped_at,
        champion=champion_version,
        rows_served=rows_served(spec),
        last_gate=with_serving(last_gate(versions), serving, rollouts),
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
