"""`ct spec check [PATH]`: validate one spec, a folder of specs, or every spec loaded, reporting
each problem on its own line (and folders without a spec.yaml); exit code 1 on any problem.

Besides the spec files themselves, every feature group's SQL (and the label's) is bound to empty
tables of the spec's types: a misspelled column is an error naming the SQL file. A landing file
whose name is not a partition key (so no partition reads it) is a warning, which does not fail the
check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ct_assets.lib.core import settings
from ct_assets.lib.core.spec_loading import check_specs
from ct_assets.lib.data.features import definition_problems
from ct_assets.lib.data.landing_names import misnamed


def _cmd_check(args: argparse.Namespace) -> int:
    report = check_specs(args.path)
    if args.path is None:
        print("checked " + (", ".join(str(p) for p in settings.config().pipeline_dirs) or "no folder"))
    problems = list(report.problems)
    warnings = []
    for spec in report.loaded:
        warnings += misnamed(settings.config().landing, spec.name, spec.partitions)
        failing = definition_problems(spec)
        problems += failing
        if failing:
            continue
        ports = f"{spec.serving.proxy_port}/{spec.serving.blue_port}/{spec.serving.green_port}"
        print(
            f"ok     {spec.name:<20} {spec.source.kind} source, {spec.partitions.grain} from "
            f"{spec.partitions.start}, {len(spec.columns)} columns, "
            f"{len(spec.feature_columns)} features, ports {ports}  ({spec.spec_dir})"
        )
    for problem in problems:
        print(f"error  {problem}", file=sys.stderr)
    for warning in warnings:
        print(f"warning {warning}", file=sys.stderr)
    if not report.loaded and not problems:
        print("no specs found", file=sys.stderr)
        return 1
    return 0 if not problems else 1


def register(commands: Any) -> None:
    spec = commands.add_parser("spec", help="check pipeline specs")
    actions = spec.add_subparsers(dest="action", required=True)
    check = actions.add_parser(
        "check", help="validate one spec (file or folder), a folder of specs, or all loaded specs"
    )
    check.add_argument(
        "path", nargs="?", type=Path, help="spec.yaml, its folder, or a folder of spec folders"
    )
    check.set_defaults(run=_cmd_check)
