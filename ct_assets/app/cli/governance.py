"""`ct lineage`, `ct audit`, `ct retention`: tracing a prediction, verifying the chain, deleting old data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ct_assets.app.cli.common import (
    CliError,
    add_pipeline_option,
    all_specs,
    open_warehouse_read_only,
    pipeline_spec,
    registry,
    who,
)
from ct_assets.lib.core import audit, settings
from ct_assets.lib.core.warehouse import connection
from ct_assets.lib.governance import chain_check, lineage, retention


def _cmd_lineage(args: argparse.Namespace) -> int:
    """Request id -> prediction -> model -> dataset -> partitions -> raw files, every hash recomputed."""
    if args.pipeline is not None:
        pipeline_spec(args.pipeline)  # an unknown pipeline is named as such, not as a missing request
    con = open_warehouse_read_only()
    try:
        tree = lineage.request_lineage(
            args.request_id, settings.config().prediction_log, settings.config().registry, con, args.pipeline
        )
    except lineage.LineageError as err:
        raise CliError(str(err)) from err
    finally:
        if con is not None:
            con.close()
    broken = tree.problems()
    print(
        json.dumps({**tree.model_dump(mode="json"), "problems": broken}, indent=2)
        if args.json
        else lineage.render(tree)
    )
    return 1 if broken else 0


def _whole_number(text: str) -> int:
    """An argparse type: a count of 0 or more."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text!r}")
    return number


def _latest(entries: list[dict[str, Any]], last: int) -> list[dict[str, Any]]:
    return entries[len(entries) - last :] if last else []


def _audit_log(args: argparse.Namespace, log: audit.AuditLog) -> int:
    """`ct audit log`: the latest `--last` entries (of one pipeline, with `--pipeline`)."""
    if args.bento is not None:
        raise CliError(
            "--bento is for `ct audit verify` (the bento whose chain to check), not `ct audit log`", 2
        )
    if args.pipeline is not None:
        pipeline_spec(args.pipeline)
    shown = _latest(log.entries(pipeline=args.pipeline), args.last)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    for entry in shown:
        print(
            f"{entry['seq']:>5}  {entry['at'][:19]}  {entry['action']:<18} {entry['subject'] or '-':<28} "
            f"by {entry['who']}: {entry['why']}"
        )
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    """`ct audit verify`: the serving chain of each pipeline and the audit log's own hash chain;
    `ct audit log`: the latest entries."""
    config = settings.config()
    log = audit.home_log(config.audit_home)
    if args.action == "log":
        return _audit_log(args, log)
    from ct_assets.lib.serving import (
        steps as deploy_steps,
    )  # pulls in numpy and pyarrow, which only this command needs

    specs = [pipeline_spec(args.pipeline)] if args.pipeline else all_specs()
    con = open_warehouse_read_only()
    results = []
    try:
        for spec in specs:
            results.append(
                chain_check.check_chain(
                    spec.name,
                    deploy_steps.deployment(spec, config).state(),
                    registry(spec.name),
                    log,
                    con,
                    bento_tag=args.bento,
                    bentoml_home=config.bentoml_home,
                )
            )
    finally:
        if con is not None:
            con.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print("\n\n".join(r.render() for r in results))
    return 0 if all(r.ok for r in results) else 1


def _cmd_retention(args: argparse.Namespace) -> int:
    """Delete raw partitions and prediction logs past the spec's retention (or show them: --dry-run)."""
    from ct_assets.lib.serving import (
        steps as deploy_steps,
    )  # pulls in numpy and pyarrow, which only this command needs

    spec = pipeline_spec(args.pipeline)
    config = settings.config()
    reg = registry(spec.name)
    with connection(config.warehouse, read_only=args.dry_run) as con:
        report = retention.run_retention(
            spec,
            con,
            config.landing,
            config.prediction_log,
            reg,
            deploy_steps.deployment(spec, config).state(),
            reg.audit(),
            who=who(args),
            dry_run=args.dry_run,
        )
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def register(commands: Any) -> None:
    lineage = commands.add_parser("lineage", help="trace a served prediction back to its raw files")
    lineage.add_argument("request_id")
    lineage.add_argument("--pipeline", help="only look in this pipeline's prediction log")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.set_defaults(run=_cmd_lineage)

    audit = commands.add_parser("audit", help="verify the serving model's hash chain, or show the audit log")
    audit.add_argument("action", choices=["verify", "log"])
    audit.add_argument("--pipeline", help="one pipeline (default: all)")
    audit.add_argument("--bento", help="verify this bento tag instead of the one serving (verify)")
    audit.add_argument("--last", type=_whole_number, default=20, help="entries to show (log; default 20)")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.set_defaults(run=_cmd_audit)

    retention = commands.add_parser("retention", help="delete raw data and prediction logs past retention")
    add_pipeline_option(retention)
    retention.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    retention.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    retention.set_defaults(run=_cmd_retention)
