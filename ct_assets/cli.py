"""`ct`: the operator's command line (demo, landing demo files, the UI)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ct_assets.app.instance_home import prepare_dagster_home
from ct_assets.lib.core import settings
from ct_assets.lib.core.dates import day_keys
from ct_assets.lib.core.spec import PipelineSpec, SpecError, load_all_specs
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.rollout import Deployment, RolloutResult


def _spec(name: str) -> PipelineSpec:
    specs = {s.name: s for s in load_all_specs(settings.pipelines_dir())}
    if name not in specs:
        raise SystemExit(
            f"ct: no pipeline {name!r} in {settings.pipelines_dir()} (have: {', '.join(specs) or 'none'})"
        )
    return specs[name]


def _cmd_land(args: argparse.Namespace) -> int:
    from ct_assets.app.demo import land_days

    paths = land_days(_spec(args.pipeline), day_keys(args.start, args.end), settings.config().landing)
    print(f"landed {len(paths)} files under {settings.landing_root() / args.pipeline}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.offline:
        return _demo_offline(args)
    from ct_assets.app.live import LiveOptions, run_live

    options = LiveOptions(
        days=args.days or 30,
        seconds_per_day=args.seconds_per_day,
        batch_rows=args.batch_rows,
        ui_port=args.port,
        exit_when_done=args.exit_when_done,
    )
    return run_live(_spec(args.pipeline), options)


def _demo_offline(args: argparse.Namespace) -> int:
    """Land days and materialize them in this process, then open the UI (no serving, no sensors)."""
    import dagster as dg
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ct_assets.app.demo import land_days, materialize_context, materialize_partition

    prepare_dagster_home()
    spec = _spec(args.pipeline)
    start = spec.partitions.start
    days = [(start + timedelta(days=i)).isoformat() for i in range(args.days or 21)]
    console = Console()
    console.print(
        f"[bold]ct demo[/]: {spec.name}, {len(days)} days from {days[0]}, home {settings.ct_home()}"
    )
    land_days(spec, days, settings.config().landing)
    instance = dg.DagsterInstance.get()
    materialize_context(spec, instance)
    table = Table("partition", "rows", "valid", "quarantined", "features", "run")
    failed = 0
    with Progress(console=console) as progress:
        task = progress.add_task("raw -> validated -> features", total=len(days))
        for day in days:
            counts = materialize_partition(spec, day, instance)
            failed += not counts.succeeded
            table.add_row(
                day,
                str(counts.rows),
                str(counts.valid),
                str(counts.quarantined),
                str(counts.features),
                "ok" if counts.succeeded else "[red]failed[/]",
            )
            progress.advance(task)
    console.print(table)
    if failed:
        console.print(f"[red]{failed} partition run(s) failed; see the Dagster UI for details[/]")
    if args.no_ui:
        return 1 if failed else 0
    return _serve_ui(args.port)


def _cmd_replay(args: argparse.Namespace) -> int:
    import dagster as dg
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ct_assets.app.replay import ReplayDay, replay, write_outputs

    prepare_dagster_home()
    spec = _spec(args.pipeline)
    days = day_keys(args.start, args.end)
    console = Console(width=max(Console().width, 150))
    table = Table(
        "partition", "rows", "quarantined", "champion", "champion AUC", "retrained", "promoted", "note"
    )

    with Progress(console=console) as progress:
        task = progress.add_task(f"replay {spec.name}", total=len(days))

        def show(day: ReplayDay) -> None:
            auc = f"{day.champion_auc:.3f}" if day.champion_auc is not None else "-"
            table.add_row(
                day.partition,
                str(day.rows),
                str(day.quarantined),
                day.champion,
                auc,
                "yes" if day.retrained else "",
                "yes" if day.promoted else "",
                day.note,
            )
            progress.advance(task)

        results = replay(spec, days, dg.DagsterInstance.get(), on_day=show)
    console.print(table)
    out = args.out or settings.ct_home() / "reports"
    csv_path, png_path = write_outputs(results, out, f"replay_{spec.name}_{args.start}_{args.end}")
    console.print(f"table: {csv_path}\nplot:  {png_path}")
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    import csv

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from ct_assets.app.demo import land_days
    from ct_assets.lib.core.warehouse import connection
    from ct_assets.lib.model import backtest

    spec = _spec(args.pipeline)
    days = day_keys(args.start or spec.partitions.start.isoformat(), args.end)
    policies = [p for p in args.policies.split(",") if p]
    unknown = [p for p in policies if p not in backtest.POLICIES]
    if unknown:
        raise SystemExit(f"ct: unknown policies {unknown}; choose from {', '.join(backtest.POLICIES)}")
    console = Console(width=max(Console().width, 130))
    out = args.out or settings.ct_home() / "reports"
    with Progress(console=console) as progress:
        task = progress.add_task("features (library code, cached)", total=len(days))
        if spec.source.kind == "demo":
            land_days(spec, days, settings.config().landing)
        with connection(settings.ct_home() / "backtest" / spec.name / "warehouse.duckdb") as con:
            backtest.build_features(
                con, spec, settings.landing_root(), days, lambda _: progress.advance(task)
            )
            frames = backtest.load_frames(con, spec, days)
        runner = backtest.Backtest(spec, frames)
        first = days[spec.training.window_partitions - 1]
        runs = []
        for policy in policies:
            task = progress.add_task(policy, total=len([d for d in days if d > first]))
            runs.append(runner.run(policy, first, lambda _p, _d, t=task: progress.advance(t)))
    table = Table("policy", "days", "mean daily AUC", "mean daily log-loss", "retrains", "training CPU s")
    for run in runs:
        row = run.summary()
        table.add_row(
            row["policy"],
            str(row["days"]),
            f"{row['mean_daily_auc']:.4f}",
            f"{row['mean_daily_log_loss']:.4f}",
            str(row["retrains"]),
            f"{row['training_cpu_seconds']:.1f}",
        )
    console.print(table)
    for run in runs:
        for reason in run.reasons:
            console.print(f"  {run.name} retrained {reason}")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"backtest_{spec.name}_{days[0]}_{days[-1]}"
    with (out / f"{stem}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["policy", "partition", "auc", "log_loss", "model_trained_on"]
        )
        writer.writeheader()
        for run in runs:
            writer.writerows({"policy": run.name, **d} for d in run.daily)
    console.print(f"daily table: {out / (stem + '.csv')}\nplot: {backtest.plot(runs, out / (stem + '.png'))}")
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    import json

    from ct_assets.lib.serving import steps as deploy_steps

    deploy = deploy_steps.deployment(_spec(args.pipeline), settings.config())
    try:
        if args.action == "status":
            print(json.dumps({"state": deploy.state(), "audit": deploy.audit_log()[-10:]}, indent=2))
        elif args.action == "rollback":
            result = deploy.rollback_to_previous(who=_who(args), why=args.why or "operator rollback")
            print(f"rolled back: {result.bento} serves all traffic from slot {result.slot}")
        elif args.action == "ops":
            return _serve_operator_api(args, deploy)
        elif args.action == "approve":
            result = deploy.approve(who=_who(args), why=args.why or "approved after a healthy canary")
            print(f"switched: {result.bento} serves all traffic from slot {result.slot}")
        else:
            deploy.shutdown()
            print("stopped the proxy and both slots")
    except RuntimeError as err:
        print(f"ct: {err}", file=sys.stderr)
        return 1
    return 0


def _serve_operator_api(args: argparse.Namespace, deploy: Deployment) -> int:
    """The token-protected operator API on loopback (CT_OPERATOR_TOKEN from the environment)."""
    import uvicorn

    from ct_assets.lib.core.warehouse import connection
    from ct_assets.lib.serving import steps as deploy_steps
    from ct_assets.lib.serving.operator_api import create_app

    spec = _spec(args.pipeline)

    def rollout(bento: str, who: str) -> RolloutResult:
        config = settings.config()
        registry = _registry(spec.name)
        record = registry.champion()
        if record and not deploy_steps.compatibility_path(spec, record["version"], config).exists():
            with connection(config.warehouse, read_only=True) as con:
                deploy_steps.publish_compatibility(con, spec, record, registry, config)
        return deploy_steps.roll_out(spec, registry, bento, who, config)

    # The operator API's process also runs the serving watchdog: failover to the standby slot, with
    # an audit entry and a critical alert in $CT_HOME/alerts.jsonl, when the active slot goes DOWN.
    from ct_assets.lib.monitor import alerts
    from ct_assets.lib.serving.watchdog import Watchdog

    alert_file = settings.config().alerts_file
    owner = spec.monitoring.owners.get("critical", spec.owner)
    with Watchdog(deploy, lambda a: alerts.write_jsonl(alert_file, a), spec.name, owner, interval=0.5):
        uvicorn.run(create_app(deploy, rollout), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def _registry(pipeline: str) -> Registry:

    config = settings.config()
    return Registry(config.registry, _spec(pipeline).name, config.audit_home)


def _cmd_models(args: argparse.Namespace) -> int:
    registry = _registry(args.pipeline)
    champion = registry.champion_version()
    for record in registry.versions():
        verdict = record.get("verdict") or {}
        auc = (record.get("evaluation") or {}).get("candidate", {}).get("auc")
        status = "PASSED" if verdict.get("passed") else "FAILED" if verdict else "not evaluated"
        mark = "*" if record["version"] == champion else " "
        reasons = "; ".join(verdict.get("reasons", []))
        shown = "-" if auc is None else f"{auc:.4f}"
        print(
            f"{mark} {record['version']}  dataset {record['dataset_version']}  auc {shown}  gate {status}",
            reasons,
        )
    for entry in registry.history():
        print(
            f"  {entry['at']}  {entry['action']:8s} {entry['previous']} -> {entry['version']}  "
            f"by {entry['who']}: {entry['why']}"
        )
    return 0


def _who(args: argparse.Namespace) -> str:
    import getpass

    return args.who or getpass.getuser()


def _cmd_promote(args: argparse.Namespace) -> int:
    from ct_assets.lib.model.registry import RegistryError

    try:
        entry = _registry(args.pipeline).promote(args.version, who=_who(args), why=args.why)
    except RegistryError as err:
        print(f"ct: {err}", file=sys.stderr)
        return 1
    print(f"champion of {args.pipeline}: {entry['previous']} -> {entry['version']}")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from ct_assets.lib.model.registry import RegistryError

    try:
        entry = _registry(args.pipeline).rollback(who=_who(args), why=args.why)
    except RegistryError as err:
        print(f"ct: {err}", file=sys.stderr)
        return 1
    print(f"champion of {args.pipeline} rolled back: {entry['previous']} -> {entry['version']}")
    return 0


def _open_warehouse_read_only() -> Any:
    """The warehouse read-only, or None (with a note) when it is missing or a writer holds it."""
    import duckdb

    from ct_assets.lib.core.warehouse import open_connection

    path = settings.warehouse_path()
    if not path.exists():
        return None
    try:
        return open_connection(path, read_only=True, retries=10)
    except duckdb.Error as err:
        print(f"ct: warehouse not compared ({err})", file=sys.stderr)
        return None


def _cmd_lineage(args: argparse.Namespace) -> int:
    """Request id -> prediction -> model -> dataset -> partitions -> raw files, every hash recomputed."""
    import json

    from ct_assets.lib.governance import lineage

    con = _open_warehouse_read_only()
    try:
        tree = lineage.request_lineage(
            args.request_id, settings.config().prediction_log, settings.registry_root(), con, args.pipeline
        )
    except lineage.LineageError as err:
        print(f"ct: {err}", file=sys.stderr)
        return 1
    finally:
        if con is not None:
            con.close()
    broken = lineage.problems(tree)
    print(
        json.dumps({**tree, "problems": broken}, indent=2, default=str) if args.json else lineage.render(tree)
    )
    return 1 if broken else 0


def _cmd_audit(args: argparse.Namespace) -> int:
    """`ct audit verify`: the serving chain of each pipeline and the audit log's own hash chain;
    `ct audit log`: the latest entries."""
    import json

    from ct_assets.lib.governance import audit, chain_check
    from ct_assets.lib.serving import steps as deploy_steps

    config = settings.config()
    log = audit.home_log(config.audit_home)
    if args.action == "log":
        for entry in log.entries(pipeline=args.pipeline)[-args.last :]:
            print(
                f"{entry['seq']:>5}  {entry['at'][:19]}  {entry['action']:<18} {entry['subject'] or '-':<28} "
                f"by {entry['who']}: {entry['why']}"
            )
        return 0
    specs = [_spec(args.pipeline)] if args.pipeline else load_all_specs(settings.pipelines_dir())
    con = _open_warehouse_read_only()
    results = []
    try:
        for spec in specs:
            results.append(
                chain_check.check_chain(
                    spec.name,
                    deploy_steps.deployment(spec, config).state(),
                    _registry(spec.name),
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
    import json

    from ct_assets.lib.core.warehouse import connection
    from ct_assets.lib.governance import retention
    from ct_assets.lib.serving import steps as deploy_steps

    spec = _spec(args.pipeline)
    config = settings.config()
    registry = _registry(spec.name)
    with connection(config.warehouse, read_only=args.dry_run) as con:
        report = retention.run_retention(
            spec,
            con,
            config.landing,
            config.prediction_log,
            registry,
            deploy_steps.deployment(spec, config).state(),
            registry.audit(),
            who=_who(args),
            dry_run=args.dry_run,
        )
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def _serve_ui(port: int) -> int:
    """Run `dagster dev` until Ctrl-C; it stops cleanly on SIGINT (not on SIGTERM)."""
    prepare_dagster_home()
    print(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(settings.REPO_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process = subprocess.Popen(command, cwd=settings.REPO_ROOT, env=os.environ.copy())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def _cmd_recover(args: argparse.Namespace) -> int:
    """Runs whose worker was killed: mark them failed and free the warehouse pool slot they kept
    (the `dead_run_recovery` sensor does this every 30 s under the daemon), so a rerun does not wait."""
    import dagster as dg

    from ct_assets.app.code_location import recover_dead_runs

    prepare_dagster_home()
    with dg.DagsterInstance.get() as instance:
        print(recover_dead_runs(instance))
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    return _serve_ui(args.port)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ct", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="the live loop: Dagster, serving and a day-by-day replay of 2013 (Ctrl-C stops, rerun resumes)",
    )
    demo.add_argument("--pipeline", default="flights_delay")
    demo.add_argument("--days", type=int, help="days to play in this session (live: 30; offline: 21)")
    demo.add_argument("--seconds-per-day", type=float, default=20.0, help="replay speed (default 20)")
    demo.add_argument("--batch-rows", type=int, default=5, help="rows per prediction request (default 5)")
    demo.add_argument("--exit-when-done", action="store_true", help="stop once the days are played and idle")
    demo.add_argument("--offline", action="store_true", help="just materialize days in-process, then the UI")
    demo.add_argument("--no-ui", action="store_true", help="offline: stop after the runs")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    demo.set_defaults(run=_cmd_demo)

    land = commands.add_parser("land", help="write demo landing files for a range of days")
    land.add_argument("--pipeline", default="flights_delay")
    land.add_argument("--start", required=True, type=lambda s: date.fromisoformat(s).isoformat())
    land.add_argument("--end", required=True, type=lambda s: date.fromisoformat(s).isoformat())
    land.set_defaults(run=_cmd_land)

    iso = lambda s: date.fromisoformat(s).isoformat()  # noqa: E731
    replay = commands.add_parser("replay", help="walk partitions day by day, retraining on schedule")
    replay.add_argument("--pipeline", default="flights_delay")
    replay.add_argument("--start", required=True, type=iso)
    replay.add_argument("--end", required=True, type=iso)
    replay.add_argument("--out", type=Path, help="folder for the CSV and plot (default <home>/reports)")
    replay.set_defaults(run=_cmd_replay)

    backtest = commands.add_parser("backtest", help="compare retraining policies over a stretch of days")
    backtest.add_argument("--pipeline", default="flights_delay")
    backtest.add_argument("--start", type=iso, help="first day (default: the spec's start)")
    backtest.add_argument("--end", type=iso, default="2013-12-31")
    backtest.add_argument("--policies", default="static,periodic,periodic_weekly,triggered")
    backtest.add_argument("--out", type=Path, help="folder for the CSV and plot (default <home>/reports)")
    backtest.set_defaults(run=_cmd_backtest)

    models = commands.add_parser("models", help="list model versions and the champion's history")
    models.add_argument("--pipeline", default="flights_delay")
    models.set_defaults(run=_cmd_models)

    promote = commands.add_parser("promote", help="make a version that passed its gate the champion")
    promote.add_argument("--pipeline", default="flights_delay")
    promote.add_argument("--version", required=True)
    promote.add_argument("--why", required=True)
    promote.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    promote.set_defaults(run=_cmd_promote)

    rollback = commands.add_parser("rollback", help="move the champion back to the previous one")
    rollback.add_argument("--pipeline", default="flights_delay")
    rollback.add_argument("--why", required=True)
    rollback.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    rollback.set_defaults(run=_cmd_rollback)

    deploy = commands.add_parser("deploy", help="serving: status, operator rollback, approve a canary, stop")
    deploy.add_argument("action", choices=["status", "rollback", "approve", "stop", "ops"])
    deploy.add_argument("--port", type=int, default=3799, help="port of the operator API (ops)")
    deploy.add_argument("--pipeline", default="flights_delay")
    deploy.add_argument("--why", help="reason for the audit log")
    deploy.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    deploy.set_defaults(run=_cmd_deploy)

    lineage = commands.add_parser("lineage", help="trace a served prediction back to its raw files")
    lineage.add_argument("request_id")
    lineage.add_argument("--pipeline", help="only look in this pipeline's prediction log")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    lineage.set_defaults(run=_cmd_lineage)

    audit = commands.add_parser("audit", help="verify the serving model's hash chain, or show the audit log")
    audit.add_argument("action", choices=["verify", "log"])
    audit.add_argument("--pipeline", help="one pipeline (default: all)")
    audit.add_argument("--bento", help="verify this bento tag instead of the one serving")
    audit.add_argument("--last", type=int, default=20, help="entries to show (log)")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(run=_cmd_audit)

    retention = commands.add_parser("retention", help="delete raw data and prediction logs past retention")
    retention.add_argument("--pipeline", default="flights_delay")
    retention.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    retention.add_argument("--who", help="operator name for the audit log (default: the OS user)")
    retention.set_defaults(run=_cmd_retention)

    recover = commands.add_parser(
        "recover", help="mark runs whose worker was killed as failed and free their pool slots"
    )
    recover.set_defaults(run=_cmd_recover)

    ui = commands.add_parser("ui", help="start the Dagster UI and daemon on the home folder")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(run=_cmd_ui)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SpecError as err:
        print(f"ct: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
