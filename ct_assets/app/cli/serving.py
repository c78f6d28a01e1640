"""`ct deploy`: starting (deploying the champion), serving status, operator rollback, approving a
canary, stopping, and the operator API."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ct_assets.app.cli.common import (
    CliError,
    add_pipeline_option,
    pipeline_spec,
    registry,
    require_free_port,
    who,
)
from ct_assets.lib.core import alerts, settings
from ct_assets.lib.serving.operator_api import TOKEN_VARIABLE, create_app
from ct_assets.lib.serving.rollout import Deployment, RolloutResult
from ct_assets.lib.serving.watchdog import Watchdog


def _cmd_deploy(args: argparse.Namespace) -> int:
    from ct_assets.lib.serving import (
        steps as deploy_steps,
    )  # pulls in numpy and pyarrow, which only this command needs

    deploy = deploy_steps.deployment(pipeline_spec(args.pipeline), settings.config())
    try:
        if args.action == "start":
            return _start(args)
        if args.action == "status":
            report = {
                "state": deploy.state().model_dump(),
                "health": deploy.health(),
                "audit": deploy.audit_log()[-10:],
            }
            print(json.dumps(report, indent=2))
        elif args.action == "rollback":
            result = deploy.rollback_to_previous(who=who(args), why=args.why or "operator rollback")
            notes = "".join(f" ({note})" for note in result.reasons[1:])
            print(f"rolled back: {result.bento} serves all traffic from slot {result.slot}{notes}")
        elif args.action == "ops":
            return _serve_operator_api(args, deploy)
        elif args.action == "approve":
            result = deploy.approve(who=who(args), why=args.why or "approved after a healthy canary")
            print(f"switched: {result.bento} serves all traffic from slot {result.slot}")
        else:
            stopped = deploy.shutdown(who=who(args), why=args.why or "operator stop (no reason given)")
            print(_stopped_line(deploy.folder.name, stopped))
    except (RuntimeError, OSError) as err:  # the proxy or a slot is down: one line, no traceback
        raise CliError(str(err)) from err
    return 0


def _stopped_line(pipeline: str, stopped: dict[str, str]) -> str:
    """What `ct deploy stop` stopped (`Deployment.shutdown`: the proxy first), or that nothing ran."""
    if not stopped:
        return f"the {pipeline} deployment was already stopped: nothing runs"
    parts = sorted(stopped.values(), key=lambda part: part != "the proxy")
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"stopped {listed}"


def _start(args: argparse.Namespace) -> int:
    """Deploy the pipeline's champion (`deploy_start`); a rolled-back rollout exits 1 with its reasons."""
    from ct_assets.lib.serving.deploy_start import (
        deploy_champion,
    )  # pulls in numpy and pyarrow, which only this command needs

    spec = pipeline_spec(args.pipeline)
    config = settings.config()
    result = deploy_champion(spec, registry(spec.name), config, who(args), say=lambda line: print(line))
    url = f"http://127.0.0.1:{spec.serving.proxy_port}"
    if result.status == "rolled_back":
        raise CliError(f"rollout of {result.bento} rolled back: {'; '.join(result.reasons)}")
    if result.status == "already_serving":
        print(f"already serving: {result.bento} serves all traffic from slot {result.slot} at {url}")
    elif result.status == "awaiting_approval":
        print(f"canary healthy: {result.bento} waits in slot {result.slot} for `ct deploy approve`")
    else:
        print(f"deployed: {result.bento} serves all traffic from slot {result.slot} at {url}")
    return 0


def _serve_operator_api(args: argparse.Namespace, deploy: Deployment) -> int:
    """The token-protected operator API on loopback (CT_OPERATOR_TOKEN from the environment); a
    busy port is refused in one line before anything starts."""
    require_free_port(args.port, "the operator API")
    import uvicorn  # only this command serves

    from ct_assets.lib.serving import (
        steps as deploy_steps,
    )  # pulls in numpy and pyarrow, which only this command needs

    spec = pipeline_spec(args.pipeline)

    def rollout(bento: str, who: str) -> RolloutResult:
        # roll_out publishes the compatibility set of the bento's model when no bento step did
        return deploy_steps.roll_out(spec, registry(spec.name), bento, who, settings.config())

    # The operator API's process also runs the serving watchdog: failover to the standby slot, with
    # an audit entry and a critical alert in $CT_HOME/alerts.jsonl, when the active slot goes DOWN.

    alert_file = settings.config().alerts_file
    owner = spec.monitoring.owners.get("critical", spec.owner)
    with Watchdog(deploy, lambda a: alerts.write_jsonl(alert_file, a), spec.name, owner, interval=0.5):
        _say_how_it_serves(args.port)
        uvicorn.run(create_app(deploy, rollout), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def _say_how_it_serves(port: int) -> None:
    """One line at start: where the API answers, or (on stderr) that it is disabled until the token
    is set. The process serves either way, for its watchdog."""
    url = f"http://127.0.0.1:{port}"
    if os.environ.get(TOKEN_VARIABLE):
        print(f"operator API on {url} (bearer token from {TOKEN_VARIABLE}), with the serving watchdog")
    else:
        print(
            f"ct: the operator API on {url} is disabled until {TOKEN_VARIABLE} is set (every call "
            "answers 503); the serving watchdog runs",
            file=sys.stderr,
        )
    sys.stdout.flush()


def register(commands: Any) -> None:
    deploy = commands.add_parser(
        "deploy", help="serving: start (deploy the champion), status, rollback, approve a canary, stop"
    )
    deploy.add_argument("action", choices=["start", "status", "rollback", "approve", "stop", "ops"])
    deploy.add_argument("--port", type=int, default=3799, help="port of the operator API (ops)")
    add_pipeline_option(deploy)
    deploy.add_argument("--why", help="reason for the audit log")
    deploy.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    deploy.set_defaults(run=_cmd_deploy)
