"""Benchmark of one served row's feature SQL: where DuckDB spends the time of the flights spec's
feature query for a single request row, and what the per-query floor is.

Setup (in a temporary folder, removed at the end): the flights spec; two days of 2013 flights
landed (`demo_source`) and built into features (`backtest.build_features`, the data layer's library
steps); the online snapshot published as of the second day; a `FeatureEngine` on it, as a service
worker holds one.

Measured on 300 request rows (latest first), each figure the median over `--repeats` passes
(default 3) after a warm-up:
- `FeatureEngine.features` for one row (the served path: `EXECUTE` of the statement prepared
  once per thread), wall time and this process's CPU per row;
- the same statement run as plain SQL with the row inlined (no prepared statement);
- a parameterless `EXECUTE` of the same query over a one-row temporary table that does not change
  between runs (what a cached plan would cost if DuckDB kept it);
- a parameterless `EXECUTE` reading a one-row table, and one of a constant expression: DuckDB
  binds and plans a prepared statement that reads any table on every `EXECUTE`, and keeps the
  plan of one that reads none;
- `SELECT 1` (DuckDB's floor per statement from Python);
- DuckDB's own profile of one `EXECUTE` (`profiling_mode = 'detailed'`): binding, planning,
  optimizing, physical planning and execution, in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from serving_setup import SPEC_PATH, request_rows, write_spec_variant

DAYS = ["2013-01-01", "2013-01-02"]


def timed(call: Callable[[], Any], count: int, repeats: int) -> tuple[float, float]:
    """Median wall ms per call over `repeats` passes of `count` calls, and CPU ms per call."""
    for _ in range(min(count, 30)):
        call()
    walls = []
    cpu_started = time.process_time()
    for _ in range(repeats * count):
        started = time.perf_counter()
        call()
        walls.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_started) / (repeats * count)
    return statistics.median(walls) * 1000, cpu * 1000


def build(root: Path) -> tuple[Any, list[dict]]:
    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.data import demo_source, online_snapshot
    from ct_assets.lib.monitor.backtest import build_features
    from ct_assets.lib.serving.feature_engine import FeatureEngine

    spec = load_spec(write_spec_variant(root / "pipelines" / "flights_delay", {}))
    landing = root / "landing"
    demo_source.land_context(landing, spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(landing, spec.name, day)
    con = open_connection(root / "warehouse.duckdb")
    build_features(con, spec, landing, DAYS)
    online_snapshot.publish(con, spec, DAYS[-1], root / "online", history_hours=48)
    rows = request_rows(con, spec, DAYS, 300)
    con.close()
    return FeatureEngine(spec, root / "online"), rows


def profile(cursor: Any, statement: str, path: Path) -> dict[str, float]:
    """DuckDB's phase timings (ms) for one run of `statement`."""
    cursor.execute("SET enable_profiling = 'json'")
    cursor.execute("SET profiling_mode = 'detailed'")
    cursor.execute(f"SET profiling_output = '{path}'")
    cursor.execute(statement).fetchall()
    cursor.execute("SET enable_profiling = 'no_output'")
    found = json.loads(path.read_text())
    return {
        "binding": found["planner"]["binding_time"] * 1000,
        "planning (rest)": found["planner"]["total_time"] * 1000,
        "optimizing": found["optimizer"]["total_time"] * 1000,
        "physical planning": found["physical_planner"]["total_time"] * 1000,
        "execution (CPU)": found["query"]["cpu_time"] * 1000,
        "total (profiled)": found["query"]["total_time"] * 1000,
    }


def measure(engine: Any, rows: list[dict], repeats: int) -> None:
    from ct_assets.lib.core.warehouse import quote
    from ct_assets.lib.data.ingest import DUCKDB_TYPES
    from ct_assets.lib.serving.feature_engine import _literals
    from ct_assets.lib.serving.request_parsing import validate_request

    spec = engine.spec
    requests = [validate_request([row], spec) for row in rows]
    served = iter(requests * (repeats + 2))
    figures = {
        "FeatureEngine.features, one row (prepared EXECUTE)": timed(
            lambda: engine.features(next(served)), len(requests), repeats
        )
    }

    cursor = engine.con.cursor()
    values = [requests[0].column(n)[0] for n in engine._params]
    inlined = engine._one_row
    for index in reversed(range(len(values))):
        inlined = inlined.replace(f"${index + 1}::", f"{_literals([values[index]])}::")
    figures["the same query as plain SQL, row inlined"] = timed(
        lambda: cursor.execute(inlined).fetchall(), len(requests), repeats
    )
    columns = ", ".join(f"{quote(n)} {DUCKDB_TYPES[c.type]}" for n, c in spec.columns.items())
    cursor.execute(f"CREATE TEMP TABLE _row ({columns})")
    names = ", ".join(quote(n) for n in engine._params)
    cursor.execute(f"INSERT INTO _row ({names}) VALUES ({_literals(values)})")
    cursor.execute(f"PREPARE _cached AS WITH validated AS (SELECT * FROM _row){engine._one_row_tail}")
    figures["parameterless EXECUTE, nothing changed between runs"] = timed(
        lambda: cursor.execute("EXECUTE _cached").fetchall(), len(requests), repeats
    )
    # DuckDB's plan reuse: a prepared statement that reads a table is bound and planned again on
    # every EXECUTE; one over constants keeps its plan
    cursor.execute("CREATE TEMP TABLE _tiny AS SELECT 5 AS k")
    cursor.execute("PREPARE _reads_table AS SELECT k + 1 FROM _tiny")
    figures["parameterless EXECUTE reading a one-row table"] = timed(
        lambda: cursor.execute("EXECUTE _reads_table").fetchall(), len(requests), repeats
    )
    cursor.execute("PREPARE _constant AS SELECT 5 + 1")
    figures["parameterless EXECUTE of a constant"] = timed(
        lambda: cursor.execute("EXECUTE _constant").fetchall(), len(requests), repeats
    )
    figures["SELECT 1"] = timed(lambda: cursor.execute("SELECT 1").fetchall(), len(requests), repeats)

    print("| statement, one row | wall ms (median) | CPU ms per run |")
    print("| --- | --- | --- |")
    for name, (wall, cpu) in figures.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    with tempfile.TemporaryDirectory() as folder:
        prepared = engine._prepared_cursor()
        phases = profile(prepared, f"EXECUTE _features({_literals(values)})", Path(folder) / "profile.json")
    print()
    print("| DuckDB phase of one prepared EXECUTE (profiled) | ms |")
    print("| --- | --- |")
    for name, ms in phases.items():
        print(f"| {name} | {ms:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import duckdb

    print(f"DuckDB {duckdb.__version__}, spec {SPEC_PATH.relative_to(SPEC_PATH.parents[2])}")
    with tempfile.TemporaryDirectory() as folder:
        engine, rows = build(Path(folder))
        measure(engine, rows, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
