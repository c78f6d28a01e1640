"""`ct status [--json]`: one summary of a pipeline across the system — what serves in each slot
and its share of traffic, the registry champion, the last gate verdict with its reasons, the last
retrain with its trigger and reason, the rows served, the last rollout step and why, and whether
the proxy, slots, daemon and webserver answer. `ct deploy status` stays the serving detail; both
read the deployment's own record."""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

from ct_assets.app.cli.common import (
    add_pipeline_option,
    pipeline_spec,
    prepared_dagster_home,
    registry,
    running_daemons,
    webserver_ports,
)
from ct_assets.lib.core import names, settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving import prediction_log, proxy
from ct_assets.lib.serving.rollout import Deployment

ROLLOUT_ACTIONS = {
    "rollout_started",
    "canary",
    "switch",
    "rollback",
    "awaiting_approval",
    "approved",
    "failover",
}


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def serving(spec: PipelineSpec, deploy: Deployment) -> dict[str, Any]:
    """Per slot: the bento it serves, its version, its share of traffic and whether it is up."""

    state = deploy.state()
    try:
        stats = proxy.server_stats(deploy.layout) if deploy.layout.socket.exists() else {}
    except OSError:
        stats = {}
    total = sum(int(s.get("weight") or 0) for s in stats.values())
    ports = {"blue": spec.serving.blue_port, "green": spec.serving.green_port}
    slots = {}
    for slot, port in ports.items():
        bento = state.bento_in(slot)
        weight = int((stats.get(slot) or {}).get("weight") or 0)
        slots[slot] = {
            "bento": bento,
            "version": bento.split(":")[-1] if bento else None,
            "share": round(weight / total, 3) if total else 0.0,
            "up": _answers(port),
            "active": state.active == slot,
        }
    return slots


def rows_served(spec: PipelineSpec) -> int:
    """Predictions in the pipeline's prediction log (every slot, every day)."""

    tables = map(
        prediction_log.read_table, prediction_log.log_files(settings.config().prediction_log / spec.name)
    )
    return sum(t.num_rows for t in tables if t is not None)


def last_gate(spec: PipelineSpec) -> dict[str, Any] | None:
    evaluated = [r for r in registry(spec.name).versions() if r.verdict is not None]
    if not evaluated:
        return None
    record = evaluated[-1]
    auc = record.holdout_auc
    return {
        "version": record.version,
        "passed": record.passed,
        "reasons": list(record.verdict.reasons) if record.verdict else [],
        "auc": None if auc is None else round(auc, 4),
    }


def last_retrain(spec: PipelineSpec) -> dict[str, Any] | None:
    """The newest retrain run in the Dagster instance: its status, trigger, partition and reason."""
    import dagster as dg

    prepared_dagster_home()
    with dg.DagsterInstance.get() as instance:
        found = instance.get_runs(
            filters=dg.RunsFilter(job_name=names.job_name(spec.name, "retrain")), limit=1
        )
    if not found:
        return None
    run = found[0]
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "trigger": run.tags.get("ct/trigger", "manual"),
        "partition": run.tags.get("ct/partition"),
        "reason": run.tags.get("ct/reason", ""),
    }


def collect(spec: PipelineSpec) -> dict[str, Any]:
    from ct_assets.lib.serving import (
        steps as deploy_steps,
    )  # pulls in numpy and pyarrow, which only this command needs

    deploy = deploy_steps.deployment(spec, settings.config())
    champion = registry(spec.name).champion()
    rollouts = [e for e in deploy.audit_log() if e.get("action") in ROLLOUT_ACTIONS]
    rollout = rollouts[-1] if rollouts else None
    proxy_health = deploy.health()["proxy"]
    return {
        "pipeline": spec.name,
        "serving": serving(spec, deploy),
        "champion": champion.version if champion else None,
        "rows_served": rows_served(spec),
        "last_gate": last_gate(spec),
        "last_retrain": last_retrain(spec),
        "last_rollout": {k: rollout.get(k) for k in ("at", "action", "bento", "slot", "who", "why")}
        if rollout
        else None,
        "health": {
            "proxy": _answers(spec.serving.proxy_port),
            "proxy_supervised": proxy_health["supervisor_pid"] is not None,
            "daemon": bool(running_daemons(settings.dagster_home())),
            "webserver": any(_answers(port) for port in webserver_ports(settings.dagster_home())),
        },
        "proxy_restarts": max(0, int(proxy_health["starts"]) - 1),
    }


def render(status: dict[str, Any]) -> str:
    lines = [f"pipeline      {status['pipeline']}"]
    for slot, s in status["serving"].items():
        what = f"{s['version']} ({s['bento']})" if s["bento"] else "nothing"
        state = "up" if s["up"] else "down"
        lines.append(
            f"slot {slot:<8} {what}, {s['share']:.0%} of traffic, {state}{', active' if s['active'] else ''}"
        )
    lines.append(f"champion      {status['champion'] or 'none yet'}")
    lines.append(f"rows served   {status['rows_served']:,}")
    gate = status["last_gate"]
    lines.append(
        f"last gate     {gate['version']} {'PASSED' if gate['passed'] else 'FAILED'}"
        + (f": {'; '.join(gate['reasons'])}" if gate["reasons"] else "")
        if gate
        else "last gate     none yet"
    )
    retrain = status["last_retrain"]
    lines.append(
        f"last retrain  {retrain['status']}, {retrain['trigger']} on {retrain['partition'] or '-'}: "
        f"{retrain['reason'] or 'no reason recorded'}"
        if retrain
        else "last retrain  none yet"
    )
    rollout = status["last_rollout"]
    lines.append(
        f"last rollout  {rollout['at'][:19]} {rollout['action']} {rollout.get('bento') or ''}: "
        f"{rollout.get('why')}"
        if rollout
        else "last rollout  none yet"
    )
    health = status["health"]
    lines.append("health        " + ", ".join(f"{k} {'up' if v else 'down'}" for k, v in health.items()))
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    status = collect(pipeline_spec(args.pipeline))
    print(json.dumps(status, indent=2, default=str) if args.json else render(status))
    return 0


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="one summary: serving, champion, gate, retrain, rollout")
    add_pipeline_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_cmd_status)
