"""`ct demo` (the live loop, or offline runs then the UI) and `ct land` (demo landing files)."""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ct_assets.app.cli.common import add_pipeline_option, day_range, pipeline_spec, prepared_dagster_home
from ct_assets.app.cli.instance import check_ui_can_start, serve_ui
from ct_assets.lib.core import settings


def iso_day(text: str) -> str:
    """An argparse type: an ISO date, normalised."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _cmd_land(args: argparse.Namespace) -> int:
    from ct_assets.app.demo import land_days  # pulls in dagster, which only this command needs

    spec = pipeline_spec(args.pipeline, source="demo")
    paths = land_days(spec, day_range(args.start, args.end), settings.config().landing)
    print(f"landed {len(paths)} files under {settings.config().landing / spec.name}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.offline:
        return _demo_offline(args)
    from ct_assets.app.live import (
        LiveOptions,
        run_live,
    )  # pulls in dagster, numpy and pyarrow, which only this command needs

    spec = pipeline_spec(args.pipeline, source="demo")
    check_ui_can_start(args.port, "the live demo")
    defaults = LiveOptions()
    options = LiveOptions(
        days=args.days or defaults.days,
        seconds_per_day=args.seconds_per_day or defaults.seconds_per_day,
        batch_rows=args.batch_rows or defaults.batch_rows,
        history_days=args.history_days,
        start=args.start,
        ui_port=args.port,
        exit_when_done=args.exit_when_done,
    )
    return run_live(spec, options)


def _demo_offline(args: argparse.Namespace) -> int:
    """Land days and materialize them in this process, then open the UI (no serving, no sensors)."""
    import dagster as dg  # 1 s to load: only the commands that run Dagster

    from ct_assets.app.demo import (  # pulls in dagster, which only this command needs
        land_days,
        materialize_context,
        materialize_partition,
    )

    spec = pipeline_spec(args.pipeline, source="demo")
    if not args.no_ui:
        check_ui_can_start(args.port, "the Dagster UI")
    prepared_dagster_home()
    start = spec.partitions.start
    days = [(start + timedelta(days=i)).isoformat() for i in range(args.days or 21)]
    console = Console()
    console.print(
        f"[bold]ct demo[/]: {spec.name}, {len(days)} days from {days[0]}, home {settings.config().home}"
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
    return serve_ui(args.port)


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="the live loop: Dagster, serving and a day-by-day replay of 2013 (Ctrl-C stops, rerun resumes)",
    )
    add_pipeline_option(demo)
    demo.add_argument("--days", type=int, help="days to replay in this run (live: 16; offline: 21)")
    demo.add_argument(
        "--start",
        type=iso_day,
        help="live, fresh home: the first replayed day (default 2013-02-13 for the flights)",
    )
    demo.add_argument(
        "--history-days",
        type=int,
        help="live, fresh home: days landed at once before the replay, for the first model "
        "(default: the demo dataset's four weeks, else the spec's training window)",
    )
    demo.add_argument(
        "--seconds-per-day",
        type=float,
        help="shortest replayed day; a day also waits for its ingest (default 30)",
    )
    demo.add_argument("--batch-rows", type=int, help="rows per prediction request (default 2)")
    demo.add_argument("--exit-when-done", action="store_true", help="stop once the days are played and idle")
    demo.add_argument("--offline", action="store_true", help="just materialize days in-process, then the UI")
    demo.add_argument("--no-ui", action="store_true", help="offline: stop after the runs")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    demo.set_defaults(run=_cmd_demo)

    land = commands.add_parser("land", help="write demo landing files for a range of days")
    add_pipeline_option(land)
    land.add_argument("--start", required=True, type=iso_day)
    land.add_argument("--end", required=True, type=iso_day)
    land.set_defaults(run=_cmd_land)
