"""`ct status [--json]`: one summary of a pipeline across the system — what serves in each slot
and its share of traffic, the registry champion, the last gate verdict with its reasons, the last
retrain with its trigger and reason, the rows served, the last rollout step and why, and whether
the proxy, slots, daemon and webserver answer. `ct deploy status` stays the serving detail; both
read the deployment's own record."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ct_assets.app.cli.common import add_pipeline_option, pipeline_spec
from ct_assets.app.system_status import RetrainSummary, SystemStatus, collect


def render(status: SystemStatus) -> str:
    lines = [f"pipeline      {status.pipeline}", *_slot_lines(status)]
    lines.append(f"champion      {status.champion or 'none yet'}")
    lines.append(f"rows served   {status.rows_served:,}")
    gate = status.last_gate
    lines.append(
        f"last gate     {gate.version} {'PASSED' if gate.passed else 'FAILED'}"
        + (f": {'; '.join(gate.reasons)}" if gate.reasons else "")
        + gate.refit_note()
        if gate
        else "last gate     none yet"
    )
    lines.append(f"last retrain  {_retrain_text(status.last_retrain)}")
    rollout = status.last_rollout
    lines.append(
        f"last rollout  {rollout.at[:19]} {rollout.action} {rollout.bento or ''}: {rollout.why}"
        if rollout
        else "last rollout  none yet"
    )
    health = status.health.model_dump()
    lines.append("health        " + ", ".join(f"{k} {'up' if v else 'down'}" for k, v in health.items()))
    return "\n".join(lines)


def _slot_lines(status: SystemStatus) -> list[str]:
    """One line per slot; one line for a deployment that `ct deploy stop` stopped."""
    if status.stopped_at and not any(s.bento for s in status.serving.values()):
        return [f"serving       stopped since {status.stopped_at[:19]} (ct deploy stop): no slot active"]
    lines = []
    for slot, s in status.serving.items():
        what = f"{s.version} ({s.bento})" if s.bento else "nothing"
        state = ("up" if s.up else "down") + (", active" if s.active else "")
        lines.append(f"slot {slot:<8} {what}, {s.share:.0%} of traffic, {state}")
    return lines


def _retrain_text(retrain: RetrainSummary | None) -> str:
    """A sensor's or schedule's retrain with its partition and reason; a run launched by hand (or
    by a driver that tags nothing) as a manual run, as of the partition its config names."""
    if retrain is None:
        return "none yet"
    if retrain.trigger == "manual" and not retrain.reason:
        as_of = f" as of {retrain.partition}" if retrain.partition else ""
        return f"{retrain.status}, manual run{as_of}"
    on = f" on {retrain.partition}" if retrain.partition else ""
    return f"{retrain.status}, {retrain.trigger}{on}: {retrain.reason or 'no reason recorded'}"


def _cmd_status(args: argparse.Namespace) -> int:
    status = collect(pipeline_spec(args.pipeline))
    print(json.dumps(status.model_dump(mode="json"), indent=2) if args.json else render(status))
    return 0


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="one summary: serving, champion, gate, retrain, rollout")
    add_pipeline_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_cmd_status)
