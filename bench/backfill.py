"""Benchmark of a backfill: N monthly partitions through the library path and the Dagster CLI.

Writes a monthly spec (`loans_monthly`: the loan-applications test pipeline with a monthly grain,
a reference context table and one feature group plus the label) and N monthly CSV landing files
of `--rows` applications each, spread over the month, with a few bad rows per file (unknown grade,
negative amount) that validation quarantines.

Then, on the same files, each in a fresh warehouse:

* library: one Python process calls `load_context`, then for every partition `ingest_raw` ->
  `validate_partition` -> `materialize_group` for every group -> `build_features`, as the assets do;
* Dagster CLI: a fresh `DAGSTER_HOME`, then the real `dagster` command: `dagster asset materialize`
  of the context table, then of the data-layer assets over `--partition-range first...last` (one
  run: the assets' BackfillPolicy is single-run). `--instance` picks the instance storage: `sqlite`
  (default) installs the project's `dagster.yaml` (SQLite files in `DAGSTER_HOME`); `postgres`
  installs `dagster.postgres.yaml` and points its CT_PG_* variables at a throwaway PostgreSQL
  cluster (`postgres_cluster.py`, fsync off), started before the timed commands and removed after.

Prints the instance storage, both wall times, the CLI's over the library's, and the row counts each
path left in the warehouse (they must agree).
Run: `uv run python bench/backfill.py --partitions 600 --instance sqlite`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from postgres_cluster import postgres_cluster

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = "loans_monthly"
START = date(1975, 1, 1)

SPEC = """
name: loans_monthly
description: Will a loan applicant default? (monthly partitions, backfill benchmark)
owner: bench@example.com
source: {kind: files}
partitions: {grain: monthly, start: START, end: END, timezone: UTC}
timestamp_column: applied_at
entity_id: loan_id
label: {column: defaulted, sql: sql/label.sql, description: Defaulted within a year}
columns:
  loan_id: {type: string, nullable: false}
  applied_at: {type: timestamp, nullable: false}
  amount: {type: float, nullable: false, min: 100, max: 100000}
  income: {type: float, min: 0}
  grade: {type: string, nullable: false, allowed: [A, B, C, D, E]}
  region: {type: string, nullable: false}
  days_late: {type: integer, min: 0}
post_event_columns: [days_late]
context_tables:
  regions:
    kind: reference
    key: [region]
    columns:
      region: {type: string, nullable: false}
      unemployment: {type: float}
feature_groups:
  application:
    sql: sql/application.sql
    columns:
      amount: {kind: numeric}
      debt_ratio: {kind: numeric}
      grade: {kind: categorical}
      region: {kind: categorical}
      region_unemployment: {kind: numeric}
segments: [grade]
training: {window_partitions: 24, validation_partitions: 2, holdout_partitions: 2}
quality: {max_quarantine_rate: 0.2}
"""
APPLICATION_SQL = """
SELECT v.loan_id, v.amount, v.amount / nullif(v.income, 0) AS debt_ratio, v.grade, v.region,
       r.unemployment AS region_unemployment
FROM validated AS v LEFT JOIN regions AS r USING (region)
"""
LABEL_SQL = "SELECT loan_id, coalesce(days_late > 90, FALSE) AS defaulted FROM validated"
INSTANCE_FILES = {"sqlite": "dagster.yaml", "postgres": "dagster.postgres.yaml"}
DATA_ASSETS = ["raw", "validated", "quarantine", "features_application", "labels", "features"]


def month_keys(n: int) -> list[str]:
    return [
        f"{START.year + (START.month - 1 + i) // 12}-{(START.month - 1 + i) % 12 + 1:02d}-01"
        for i in range(n)
    ]


def write_pipeline(folder: Path, n: int) -> None:
    keys = month_keys(n + 1)
    spec_folder = folder / PIPELINE
    (spec_folder / "sql").mkdir(parents=True, exist_ok=True)
    (spec_folder / "spec.yaml").write_text(SPEC.replace("START", keys[0]).replace("END", keys[-1]))
    (spec_folder / "sql" / "application.sql").write_text(APPLICATION_SQL)
    (spec_folder / "sql" / "label.sql").write_text(LABEL_SQL)


def month_file(key: str, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(key, tz="UTC")
    seconds = int((start + pd.offsets.MonthBegin(1) - start).total_seconds())
    frame = pd.DataFrame(
        {
            "loan_id": [f"{key}-{i:05d}" for i in range(rows)],
            "applied_at": [
                (start + pd.Timedelta(seconds=int(s))).strftime("%Y-%m-%dT%H:%M:%SZ")
                for s in np.sort(rng.integers(0, seconds, rows))
            ],
            "amount": rng.uniform(500, 50000, rows).round(2),
            "income": rng.uniform(10000, 150000, rows).round(2),
            "grade": rng.choice(list("ABCDE"), rows),
            "region": rng.choice(["north", "south", "east"], rows),
            "days_late": rng.choice([0, 0, 0, 10, 120], rows),
        }
    )
    bad = rng.choice(rows, size=max(1, rows // 200), replace=False)
    frame.loc[bad[::2], "grade"] = "Z"
    frame.loc[bad[1::2], "amount"] = -5.0
    return frame


def write_landing(landing: Path, keys: list[str], rows: int) -> None:
    folder = landing / PIPELINE
    (folder / "_context").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"region": ["north", "south", "east"], "unemployment": [4.1, 6.3, 5.0]}).to_csv(
        folder / "_context" / "regions.csv", index=False
    )
    for index, key in enumerate(keys):
        month_file(key, rows, index).to_csv(folder / f"{key}.csv", index=False)


def library_path(pipelines: Path, landing: Path, warehouse: Path, keys: list[str]) -> float:
    from ct_assets.lib.core.spec import load_all_specs
    from ct_assets.lib.core.warehouse import connection
    from ct_assets.lib.data import steps
    from ct_assets.lib.data.features import groups
    from ct_assets.lib.data.landing import context_file, partition_files

    spec = load_all_specs(pipelines)[0]
    started = time.perf_counter()
    with connection(warehouse) as con:
        steps.load_context(con, spec, "regions", context_file(landing, PIPELINE, "regions"))
        for key in keys:
            steps.ingest_raw(con, spec, key, partition_files(landing, PIPELINE, key))
            steps.validate_partition(con, spec, key)
            for group in groups(spec):
                steps.materialize_group(con, spec, group, key)
            steps.build_features(con, spec, key)
    return time.perf_counter() - started


@contextmanager
def instance_storage(instance: str, home: Path) -> Iterator[dict[str, str]]:
    """Install the instance file for `instance` as `home`/dagster.yaml; yield the environment
    variables it reads (for postgres, those of a running throwaway cluster)."""
    home.mkdir()
    shutil.copy(ROOT / INSTANCE_FILES[instance], home / "dagster.yaml")
    if instance == "postgres":
        with postgres_cluster() as postgres_env:
            yield postgres_env
    else:
        yield {}


def cli_path(
    work: Path, pipelines: Path, landing: Path, warehouse: Path, keys: list[str], instance: str
) -> float:
    home = work / "dagster_home"
    with instance_storage(instance, home) as storage_env:
        env = {
            **os.environ,
            **storage_env,
            "DAGSTER_HOME": str(home),
            "CT_HOME": str(work / "ct_home"),
            "CT_PIPELINES_DIR": str(pipelines),
            "CT_LANDING": str(landing),
            "CT_WAREHOUSE": str(warehouse),
        }
        base = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ct_assets.definitions"]
        selection = ",".join(f"{PIPELINE}/{a}" for a in DATA_ASSETS)
        started = time.perf_counter()
        for extra in (
            ["--select", f"{PIPELINE}/context_regions"],
            ["--select", selection, "--partition-range", f"{keys[0]}...{keys[-1]}"],
        ):
            done = subprocess.run([*base, *extra], env=env, cwd=ROOT, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"dagster failed ({' '.join(extra)}):\n{done.stderr[-3000:]}")
        return time.perf_counter() - started


def counts(warehouse: Path) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {PIPELINE}.{t}").fetchone()[0]
            for t in ("raw", "validated", "quarantine", "features")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=600)
    parser.add_argument("--rows", type=int, default=600, help="applications per monthly file")
    parser.add_argument(
        "--instance",
        choices=sorted(INSTANCE_FILES),
        default="sqlite",
        help="Dagster instance storage for the CLI run",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ct_bench_backfill_") as tmp:
        work = Path(tmp)
        keys = month_keys(args.partitions)
        write_pipeline(work / "pipelines", args.partitions)
        write_landing(work / "landing", keys, args.rows)
        library = library_path(work / "pipelines", work / "landing", work / "library.duckdb", keys)
        cli = cli_path(work, work / "pipelines", work / "landing", work / "cli.duckdb", keys, args.instance)
        ours, theirs = counts(work / "library.duckdb"), counts(work / "cli.duckdb")
    print(
        f"{platform.python_version()} on {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{args.partitions} monthly partitions {keys[0]}...{keys[-1]}, {args.rows} rows each; "
        f"Dagster instance storage: {args.instance} ({INSTANCE_FILES[args.instance]})"
    )
    print("| path | seconds | raw | validated | quarantine | features |")
    print("|---|---|---|---|---|---|")
    for name, seconds, rows in (
        ("library (one process)", library, ours),
        ("dagster CLI (one run)", cli, theirs),
    ):
        print(f"| {name} | {seconds:.1f} | " + " | ".join(str(v) for v in rows.values()) + " |")
    print(f"ratio CLI / library: {cli / library:.2f}" + ("" if ours == theirs else "  (row counts differ!)"))


if __name__ == "__main__":
    main()
