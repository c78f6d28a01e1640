"""`ct replay` (walk partitions through the real steps, retraining on schedule) and `ct backtest`
(compare retraining policies over a stretch of partitions), for demo and file sources at any grain."""

from __future__ import annotations

import argparse
import csv
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ct_assets.app.cli.common import CliError, add_pipeline_option, pipeline_spec, prepared_dagster_home
from ct_assets.app.cli.demo import iso_day
from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import connection
from ct_assets.lib.data import landing_names
from ct_assets.lib.data.landing import landed_partition_keys
from ct_assets.lib.monitor import backtest
from ct_assets.lib.monitor.backtest import partition_keys
from ct_assets.lib.monitor.backtest_builds import describe


def _default_last(spec: PipelineSpec) -> tuple[str, str] | None:
    """The last partition a range runs to without `--end`, and what it is: the spec's last
    partition, or a file source's last landed one (None: there is none)."""
    if spec.partitions.end is not None:
        stop = (spec.partitions.end - timedelta(days=1)).isoformat()
        keys = partition_keys(spec.partitions, spec.partitions.start.isoformat(), stop)
        return (keys[-1], "the last partition") if keys else None
    if spec.source.kind != "demo":
        landed = [  # a misnamed file (a Tuesday in a weekly pipeline, notes.csv) is no partition
            key
            for key in landed_partition_keys(settings.config().landing, spec.name)
            if landing_names.reason(spec.partitions, key) is None
        ]
        return (landed[-1], "the last landed partition") if landed else None
    return None


def partition_range(spec: PipelineSpec, start: str | None, end: str | None) -> list[str]:
    """The spec's partition keys (at its grain) from `start` to `end`, both included; by default
    from the spec's start to its last partition (a file source: to its last landed partition)."""

    first = start or spec.partitions.start.isoformat()
    if end is not None and end < first:
        raise CliError(f"--end {end} is before --start {first}")
    if end is None:
        default = _default_last(spec)
        if default is None:
            raise CliError(f"--end is needed: {spec.name}'s partitions have no end")
        end, what = default
        if end < first:
            raise CliError(f"--start {first} is after {what} of {spec.name}, {end}")
    keys = partition_keys(spec.partitions, first, end)
    if not keys:
        raise CliError(
            f"no {spec.partitions.grain} partition of {spec.name} starts between {first} and {end}"
        )
    return keys


def range_notes(start: str | None, end: str | None, keys: list[str], doing: str) -> list[str]:
    """A line for a `--start` or `--end` that is not a partition key, naming the key the range
    starts or ends at instead (a weekly key is a Sunday, a monthly one the 1st)."""
    notes = []
    if start is not None and start != keys[0]:
        notes.append(f"--start {start} is not a partition key; {doing} from {keys[0]}")
    if end is not None and end != keys[-1]:
        notes.append(f"--end {end} is not a partition key; {doing} up to {keys[-1]}")
    return notes


def _partitions(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def require_landed(spec: PipelineSpec, keys: list[str]) -> None:
    """A file source's partitions must have landed; say which have not."""
    from ct_assets.app.replay import missing_landing  # pulls in dagster, which only this command needs

    missing = missing_landing(spec, keys, settings.config().landing)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CliError(
            f"{len(missing)} of {len(keys)} partitions of {spec.name} have no landing file under "
            f"{settings.config().landing / spec.name}: {shown}"
        )


def _cmd_replay(args: argparse.Namespace) -> int:
    import dagster as dg  # 1 s to load: only the commands that run Dagster

    # pulls in dagster, which only this command needs
    from ct_assets.app.replay import ReplayDay, replay, write_outputs

    spec = pipeline_spec(args.pipeline)
    days = partition_range(spec, args.start, args.end)
    require_landed(spec, days)
    prepared_dagster_home()
    console = Console(width=max(Console().width, 150))
    for note in range_notes(args.start, args.end, days, "replaying"):
        console.print(note, highlight=False)
    # the champion serving when the partition arrived, scored on it; a promotion's note names the new one
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
    out = args.out or settings.config().reports
    stem = f"replay_{spec.name}_{days[0]}_{days[-1]}"
    csv_path, png_path = write_outputs(results, out, stem, spec.partitions.grain)
    console.print(f"table: {csv_path}\nplot:  {png_path}")
    return 0


def _policies(text: str) -> list[str]:
    policies = [p for p in text.split(",") if p]
    unknown = [p for p in policies if p not in backtest.POLICIES]
    if unknown:
        raise CliError(f"unknown policies {unknown}; choose from {', '.join(backtest.POLICIES)}")
    return policies


def _summary_table(runs: list[Any]) -> Any:
    table = Table(
        "policy", "partitions", "mean AUC", "mean log-loss", "mean ECE", "retrains", "refused", "CPU s"
    )
    for run in runs:
        row = run.summary()
        table.add_row(
            run.name,
            str(row["partitions"]),
            f"{row['mean_auc']:.4f}" if row["mean_auc"] is not None else "-",
            f"{row['mean_log_loss']:.4f}",
            f"{row['mean_ece']:.4f}",
            str(row["retrains"]),
            str(row["refused"]),
            f"{row['cpu_s']:.1f}",
        )
    return table


def _write_partitions(runs: list[Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "policy",
        "partition",
        "rows",
        "auc",
        "log_loss",
        "ece",
        "label_rate",
        "mean_score",
        "model_trained_on",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            writer.writerows({"policy": run.name, **d} for d in run.scored)
    return path


def _cmd_backtest(args: argparse.Namespace) -> int:
    from ct_assets.app.demo import land_days  # pulls in dagster, which only this command needs

    spec = pipeline_spec(args.pipeline)
    keys = partition_range(spec, args.start, args.end)
    policies = _policies(args.policies)
    window = spec.training.window_partitions
    if len(keys) <= window:
        raise CliError(f"{_partitions(len(keys))}: a backtest needs more than the training window ({window})")
    if spec.source.kind == "demo":
        land_days(spec, keys, settings.config().landing)
    require_landed(spec, keys)
    # with --json the last stdout line is the JSON summary; everything else goes to stderr
    console = Console(width=max(Console().width, 130), stderr=args.json)
    for note in range_notes(args.start, args.end, keys, "backtesting"):
        console.print(note, highlight=False)
    with Progress(console=console) as progress:
        task = progress.add_task("features (library code, reused when unchanged)", total=len(keys))
        with connection(settings.config().home / "backtest" / spec.name / "warehouse.duckdb") as con:
            rebuilt = backtest.build_features(
                con, spec, settings.config().landing, keys, lambda _: progress.advance(task)
            )
            frames = backtest.load_frames(con, spec, keys)
        progress.console.print(describe(rebuilt, len(keys)))
        runner = backtest.Backtest(spec, frames)
        first = keys[window - 1]
        task = progress.add_task("warm-up (in no policy's CPU s)", total=1)
        warm_up = runner.warm_up(first)
        progress.advance(task)
        runs = []
        for policy in policies:
            task = progress.add_task(policy, total=len([k for k in keys if k > first]))
            runs.append(runner.run(policy, first, lambda _p, _k, t=task: progress.advance(t)))
    console.print(_summary_table(runs))
    console.print(
        f"warm-up before the policies (imports, first model, first retrain): {warm_up.cpu_seconds:.1f} CPU s"
    )
    for run in runs:
        for reason in run.reasons:
            console.print(f"  {run.name} retrained {reason}")
    out = args.out or settings.config().reports
    stem = f"backtest_{spec.name}_{keys[0]}_{keys[-1]}"
    console.print(f"per partition: {_write_partitions(runs, out / (stem + '.csv'))}")
    console.print(f"plot: {backtest.plot(runs, out / (stem + '.png'))}")
    if args.json:
        print(json.dumps(backtest.report(spec, runs)), flush=True)
    return 0


def register(commands: Any) -> None:
    replay = commands.add_parser("replay", help="walk partitions one by one, retraining on schedule")
    add_pipeline_option(replay)
    replay.add_argument("--start", type=iso_day, help="first partition (default: the spec's start)")
    replay.add_argument("--end", type=iso_day, help="last partition (default: the spec's last)")
    replay.add_argument("--out", type=Path, help="folder for the CSV and plot (default <home>/reports)")
    replay.set_defaults(run=_cmd_replay)

    compare = commands.add_parser("backtest", help="compare retraining policies over a stretch of partitions")
    add_pipeline_option(compare)
    compare.add_argument("--start", type=iso_day, help="first partition (default: the spec's start)")
    compare.add_argument("--end", type=iso_day, help="last partition (default: the spec's last)")
    compare.add_argument(
        "--policies",
        default=",".join(backtest.POLICIES),
        help=f"retraining policies to compare, comma-separated: any of {', '.join(backtest.POLICIES)} "
        "(default: all of them)",
    )
    compare.add_argument(
        "--json", action="store_true", help="print the summary as JSON on the last stdout line"
    )
    compare.add_argument("--out", type=Path, help="folder for the CSV and plot (default <home>/reports)")
    compare.set_defaults(run=_cmd_backtest)
