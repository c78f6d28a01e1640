"""`ct models`, `ct promote`, `ct rollback`: the model registry's versions and its champion alias."""

from __future__ import annotations

import argparse
from typing import Any

from ct_assets.app.cli.common import CliError, add_pipeline_option, registry, who
from ct_assets.lib.model.registry import RegistryError


def _cmd_models(args: argparse.Namespace) -> int:
    reg = registry(args.pipeline)
    versions = reg.versions()
    if not versions:
        print(f"{reg.pipeline} has no model versions yet")
        return 0
    champion = reg.champion_version()
    for record in versions:
        verdict, auc = record.verdict, record.holdout_auc
        status = "not evaluated" if verdict is None else "PASSED" if verdict.passed else "FAILED"
        mark = "*" if record.version == champion else " "
        shown = "-" if auc is None else f"{auc:.4f}"
        line = f"{mark} {record.version}  dataset {record.dataset_version}  auc {shown}  gate {status}"
        if record.refit_of:
            line += f" (refit of {record.refit_of})"
        if verdict and verdict.reasons:
            line += " " + "; ".join(verdict.reasons)
        print(line)
    for move in reg.history():
        print(
            f"  {move.at}  {move.action:8s} {move.previous or 'none'} -> {move.version}  "
            f"by {move.who}: {move.why}"
        )
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    reg = registry(args.pipeline)
    try:
        move = reg.promote(args.version, who=who(args), why=args.why)
    except RegistryError as err:
        raise CliError(str(err)) from err
    print(f"champion of {reg.pipeline}: {move.previous or 'none'} -> {move.version}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    reg = registry(args.pipeline)
    try:
        move = reg.rollback(who=who(args), why=args.why)
    except RegistryError as err:
        raise CliError(str(err)) from err
    print(f"champion of {reg.pipeline} rolled back: {move.previous} -> {move.version}")
    return 0


def register(commands: Any) -> None:
    models = commands.add_parser("models", help="list model versions and the champion's history")
    add_pipeline_option(models)
    models.set_defaults(run=_cmd_models)

    promote = commands.add_parser("promote", help="make a version that passed its gate the champion")
    add_pipeline_option(promote)
    promote.add_argument("--version", required=True)
    promote.add_argument("--why", required=True)
    promote.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    promote.set_defaults(run=_cmd_promote)

    rollback = commands.add_parser("rollback", help="move the champion back to the previous one")
    add_pipeline_option(rollback)
    rollback.add_argument("--why", required=True)
    rollback.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    rollback.set_defaults(run=_cmd_rollback)
