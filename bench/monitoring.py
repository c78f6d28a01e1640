"""Benchmark of the monitoring layer: whylogs profiling of a large partition, and one sensor tick.

Part 1, profiling. A partition of `--rows` rows (default 1,000,000) x 20 columns is generated: 12
numeric float columns (normal, log-normal, exponential and integer-valued families) and 8
categorical string columns with 5 to 300 distinct values and skewed frequencies, about 1% nulls
each, strings in pandas' `str` dtype as DuckDB's `.df()` returns them. A few columns are shifted
(two numeric, one categorical, one with a new value) so that drift has something to find. The
partition is profiled with our code, `profiles.profile(profiles.prepare(frame, categorical,
numeric))` (large frames are split into chunks profiled in a process pool and merged), with the
default worker count (the CPU count) and with workers=1 and workers=2, and in the same run with
pandas' `frame.describe(include="all")` (the ratio is reported) and a plain single-process
`why.log(frame)`. The issue's target is that partition profiled in under 10 s.

Options are tried here, never in the library: categoricals converted to pandas `str` dtype after
`prepare` (whylogs then skips its per-value type checks), to `category` dtype, per-column numpy
arrays fed to whylogs' column tracker (a private whylogs API; nulls are tracked separately so the
profile stays complete), and row sampling. Each option's profile is checked against ours: row and
null counts, and the largest Hellinger distance between the two profiles. For sampling, the
per-feature Hellinger distances against a reference window (`--window` partitions of
`--window-rows` rows from the unshifted generator, thresholds calibrated by
`monitoring.reference` as the drift asset does) are compared between the full and the sampled
profile (`drift.partition_drift` through `monitoring.score_drift`), with the drift decisions they
lead to. The full profile built with one worker gives the noise floor of the sketches themselves.

Part 2, the drift sensor. A realistic state is written to a temporary folder: a DuckDB warehouse
with `drift_summary` (30 partitions, `drifted` holding the distances of 50 features),
`drift_columns` (50 rows per partition) and `live_performance` (overall and per origin and
carrier) written through `warehouse.replace_partition`, and a model registry with a promoted
champion. The real sensors of `build_monitor_defs(spec)` are evaluated through Dagster
(`evaluate_tick` on `build_sensor_context` with an ephemeral instance): the drift sensor when it
requests a retrain (no cursor), the drift sensor cooling down (the cursor of that request), and the
performance sensor staying quiet. The first tick is reported apart, then the median and the worst
of `--ticks` ticks. The tick's parts are timed too, and so is what the sensor would cost if it
computed drift itself: reading two profiles and `monitoring.score_drift` for one partition with 50
features against a reference window with calibrated thresholds.

Run: `uv run python bench/monitoring.py`. Timings on a shared, loaded machine vary: the load
average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from whylogs.core import DatasetProfileView

    from ct_assets.lib.core.spec import PipelineSpec
    from ct_assets.lib.monitor.measures import DriftResult, Reference

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
PROFILE_TARGET_SECONDS = 10.0
TICK_TARGET_SECONDS = 1.0
NUMERIC_COLUMNS = 12
CARDINALITIES = (5, 12, 30, 60, 100, 150, 220, 300)
NULL_RATE = 0.01
SENSOR_FEATURES = 50
SENSOR_PARTITIONS = 30
T = TypeVar("T")


# --- helpers -----------------------------------------------------------------------------------


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """Wall seconds of one call, and its result."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def verdict(seconds: float, target: float) -> str:
    return f"{'MEETS' if seconds < target else 'MISSES'} the < {target:g} s target"


def quiet() -> None:
    """Silence Dagster's beta notices, pandas deprecations inside whylogs and whylogs' logger."""
    warnings.filterwarnings("ignore")
    logging.getLogger("whylogs").setLevel(logging.ERROR)


# --- generated partitions ----------------------------------------------------------------------


def generate(
    rows: int,
    seed: int,
    numeric: int = NUMERIC_COLUMNS,
    cardinalities: tuple[int, ...] = CARDINALITIES,
    shifted: bool = False,
) -> pd.DataFrame:
    """A feature partition: numeric floats and skewed categorical strings, about 1% nulls each.

    `shifted` moves num_00 by half a standard deviation, stretches num_01 by 1.5, reverses the
    frequencies of cat_01 and gives 5% of cat_03 a value the reference never saw.
    """
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(numeric):
        family = i % 4
        if family == 0:
            values = rng.normal(10.0 * (i + 1), 1.0 + i, rows)
        elif family == 1:
            values = rng.lognormal(1.0 + 0.1 * i, 0.6, rows)
        elif family == 2:
            values = rng.exponential(5.0 + i, rows)
        else:
            values = rng.integers(0, 24 * (i + 1), rows).astype("float64")
        if shifted and i == 0:
            values = values + 0.5 * (1.0 + i)
        if shifted and i == 1:
            values = values * 1.5
        values[rng.random(rows) < NULL_RATE] = np.nan
        data[f"num_{i:02d}"] = values
    for i, count in enumerate(cardinalities):
        weights = 1.0 / np.arange(1, count + 1) ** 1.1
        if shifted and i == 1:
            weights = weights[::-1]
        labels = np.array([f"c{i}_{j:03d}" for j in range(count)], dtype=object)
        values = labels[rng.choice(count, size=rows, p=weights / weights.sum())]
        if shifted and i == 3:
            values[rng.random(rows) < 0.05] = f"c{i}_new"
        values[rng.random(rows) < NULL_RATE] = None
        data[f"cat_{i:02d}"] = pd.Series(values, dtype="str")
    return pd.DataFrame(data)


def split_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str], dict[str, str]]:
    categorical = [c for c in frame.columns if c.startswith("cat_")]
    numeric = [c for c in frame.columns if c.startswith("num_")]
    kinds = {c: "categorical" if c in categorical else "numeric" for c in frame.columns}
    return categorical, numeric, kinds


def spec_with_features(spec: PipelineSpec, kinds: dict[str, str]) -> PipelineSpec:
    """The spec with one feature group holding exactly these features, for `monitoring` calls."""
    from ct_assets.lib.core.spec import FeatureColumnSpec, FeatureGroupSpec

    group = FeatureGroupSpec.model_construct(
        sql="", description="", columns={c: FeatureColumnSpec(kind=k) for c, k in kinds.items()}
    )
    return spec.model_copy(update={"feature_groups": {"bench": group}})


# --- profiling options (benchmark only) --------------------------------------------------------


def as_str(prepared: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """`prepare`'s object-dtype categoricals as pandas `str` dtype (missing values stay missing)."""
    converted = prepared.copy(deep=False)
    for column in categorical:
        converted[column] = prepared[column].astype("str")
    return converted


def as_category(prepared: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    converted = prepared.copy(deep=False)
    for column in categorical:
        converted[column] = prepared[column].astype("category")
    return converted


def numpy_profile_bytes(frame: pd.DataFrame, categorical: list[str]) -> bytes:
    """Profile with numpy arrays through whylogs' column tracker (private `DatasetProfile._columns`).

    The first row goes through the ordinary pandas path so the schema and metrics are the ones a
    pandas log would choose; then each column's present values go in as one float64 or unicode
    array (no per-value type checks), and its nulls as a separate all-missing series, so row,
    null and NaN counts match a pandas log.
    """
    from whylogs.core import DatasetProfile

    profile = DatasetProfile()
    profile.track(pandas=frame.iloc[:1])
    rest = frame.iloc[1:]
    for name in frame.columns:
        series = rest[name]
        present = series.notna().to_numpy()
        missing = int((~present).sum())
        tracker = profile._columns[name]
        if name in categorical:
            tracker.track_column(series.to_numpy()[present].astype(str))
            nulls = pd.Series([None] * missing, dtype=object)
        else:
            tracker.track_column(series.to_numpy(dtype="float64")[present])
            nulls = pd.Series(np.full(missing, np.nan))
        if missing:
            tracker.track_column(nulls)
    return profile.view().serialize()


def numpy_profile(frame: pd.DataFrame, categorical: list[str], workers: int) -> DatasetProfileView:
    """`numpy_profile_bytes` on `workers` chunks in a process pool, merged (as `profiles.profile`)."""
    from ct_assets.lib.data import profiles

    if workers == 1:
        return profiles.deserialize(numpy_profile_bytes(frame, categorical))
    size = -(-len(frame) // workers)
    chunks = [frame.iloc[i : i + size] for i in range(0, len(frame), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        blobs = list(pool.map(partial(numpy_profile_bytes, categorical=categorical), chunks))
    return profiles.merge([profiles.deserialize(blob) for blob in blobs])


def compare_profiles(ours: DatasetProfileView, other: DatasetProfileView, kinds: dict[str, str]) -> str:
    """Row and null counts equal? The largest Hellinger distance between the two profiles."""
    from ct_assets.lib.monitor import drift

    def counts(view: DatasetProfileView, column: str) -> tuple[int, int]:
        metric = view.get_column(column).get_metric("counts")
        return int(metric.n.value), int(metric.null.value)

    same = all(counts(ours, c) == counts(other, c) for c in kinds)
    distances = drift.partition_drift(ours, other, kinds, min_rows=1, with_tests=False)
    column, worst = max(((c, r.hellinger or 0.0) for c, r in distances.items()), key=lambda i: i[1])
    return (
        f"row/null counts equal to ours: {'yes' if same else 'NO'}; "
        f"largest Hellinger to ours {worst:.4f} ({column})"
    )


# --- part 1: profiling -------------------------------------------------------------------------


def profiling(spec: PipelineSpec, args: argparse.Namespace) -> None:
    import whylogs as why

    from ct_assets.lib.data import profiles
    from ct_assets.lib.monitor import measures as monitoring

    print("== Part 1: whylogs profile of one partition ==")
    seconds, frame = timed(lambda: generate(args.rows, seed=7, shifted=True))
    categorical, numeric, kinds = split_kinds(frame)
    print(
        f"partition: {len(frame):,} rows x {frame.shape[1]} columns ({len(numeric)} float64, "
        f"{len(categorical)} categorical '{frame[categorical[0]].dtype}' with "
        f"{min(CARDINALITIES)}-{max(CARDINALITIES)} values, ~{NULL_RATE:.0%} nulls); "
        f"generated in {seconds:.1f} s"
    )
    print(f"load average before profiling: {load_average()}")

    describe, _ = timed(lambda: frame.describe(include="all"))
    print(f"pandas frame.describe(include='all'): {describe:.2f} s")

    results: dict[str, float] = {}
    views: dict[str, DatasetProfileView] = {}

    def ours(label: str, workers: int | None) -> None:
        prepare, prepared = timed(lambda: profiles.prepare(frame, categorical, numeric))
        profile, view = timed(lambda: profiles.profile(prepared, workers=workers))
        total = prepare + profile
        results[label], views[label] = total, view
        print(
            f"ours {label}: {total:.2f} s (prepare {prepare:.2f} s + profile {profile:.2f} s) = "
            f"{total / describe:.0f}x describe; {verdict(total, PROFILE_TARGET_SECONDS)}"
        )

    default_workers = os.cpu_count() or 1
    ours(f"default workers={default_workers}", None)
    ours("workers=1", 1)
    ours("workers=2", 2)
    reference = views["workers=1"]

    plain, plain_view = timed(lambda: why.log(frame).view())
    print(
        f"plain why.log(frame), one process, no prepare (categoricals stay '{frame[categorical[0]].dtype}'): "
        f"{plain:.2f} s = {plain / describe:.0f}x describe; {compare_profiles(reference, plain_view, kinds)}"
    )

    print("-- options (benchmark only; 'total' = prepare + conversion + profile) --")
    met: list[str] = []

    def option(label: str, build: Callable[[], DatasetProfileView]) -> DatasetProfileView | None:
        try:
            seconds, view = timed(build)
        except Exception as error:
            print(f"{label}: FAILS ({type(error).__name__}: {str(error)[:90]})")
            return None
        results[label] = seconds
        if seconds < PROFILE_TARGET_SECONDS:
            met.append(f"{label} {seconds:.1f} s")
        print(
            f"{label}: total {seconds:.2f} s = {seconds / describe:.0f}x describe; "
            f"{verdict(seconds, PROFILE_TARGET_SECONDS)}; {compare_profiles(reference, view, kinds)}"
        )
        return view

    def prepared_str() -> pd.DataFrame:
        return as_str(profiles.prepare(frame, categorical, numeric), categorical)

    for workers in (1, 2):
        option(f"str dtype, workers={workers}", lambda w=workers: profiles.profile(prepared_str(), workers=w))
    option(
        "category dtype, workers=1",
        lambda: profiles.profile(as_category(profiles.prepare(frame, categorical, numeric), categorical), 1),
    )
    for workers in (1, 2):
        option(
            f"numpy arrays (private whylogs API), workers={workers}",
            lambda w=workers: numpy_profile(profiles.prepare(frame, categorical, numeric), categorical, w),
        )

    sampled: dict[float, tuple[float, DatasetProfileView]] = {}
    for fraction in args.sample_fractions:
        rows = int(len(frame) * fraction)

        def build(rows: int = rows) -> DatasetProfileView:
            sample = frame.sample(n=rows, random_state=11)
            return profiles.profile(profiles.prepare(sample, categorical, numeric))

        seconds, view = timed(build)
        sampled[fraction] = (seconds, view)
        if seconds < PROFILE_TARGET_SECONDS:
            met.append(f"sample {fraction:.0%} {seconds:.1f} s")
        print(
            f"sample {fraction:.0%} ({rows:,} rows, ours on the sample): total {seconds:.2f} s = "
            f"{seconds / describe:.1f}x describe; {verdict(seconds, PROFILE_TARGET_SECONDS)}"
        )

    print(
        f"-- drift with sampled profiles: against a reference window of {args.window} x "
        f"{args.window_rows:,} unshifted rows --"
    )
    bench_spec = spec_with_features(spec, kinds)
    window = [
        profiles.profile(profiles.prepare(generate(args.window_rows, seed=100 + i), categorical, numeric))
        for i in range(args.window)
    ]
    ref = monitoring.reference(window, bench_spec)
    importance = {c: 1.0 / len(kinds) for c in kinds}
    rules = spec.monitoring
    print(
        f"thresholds (median + {rules.threshold_k:g} x MAD, floor {rules.threshold_floor:g}): "
        f"{min(ref.thresholds.values()):.3f} .. {max(ref.thresholds.values()):.3f}"
    )
    full_key = f"default workers={default_workers}"
    full = monitoring.score_drift(ref, views[full_key], len(frame), bench_spec, importance)
    print(f"full profile (ours, {full_key}): {full.describe()}")

    def against_full(label: str, view: DatasetProfileView) -> None:
        result = monitoring.score_drift(ref, view, len(frame), bench_spec, importance)
        line = drift_difference(full, result)
        print(f"{label}: {line}")

    against_full("full profile (ours, workers=1), sketch noise floor", views["workers=1"])
    for fraction, (seconds, view) in sampled.items():
        against_full(f"sample {fraction:.0%} ({seconds:.1f} s)", view)

    print(
        "options meeting the target: "
        + ("; ".join(met) if met else "none")
        + f" (ours: {results[full_key]:.1f} s)"
    )
    print(f"load average after profiling: {load_average()}")


def drift_difference(full: DriftResult, other: DriftResult) -> str:
    """How far `other`'s per-feature Hellinger distances are from `full`'s, and the decisions."""
    gaps = {
        c: abs((full.columns[c].hellinger or 0.0) - (other.columns[c].hellinger or 0.0)) for c in full.columns
    }
    worst = max(gaps, key=lambda c: gaps[c])
    same = set(full.drifted) == set(other.drifted)
    flips = sorted(set(full.drifted) ^ set(other.drifted))
    return (
        f"max |dHellinger| {gaps[worst]:.4f} ({worst}: {full.columns[worst].hellinger:.4f} -> "
        f"{other.columns[worst].hellinger:.4f}), mean {statistics.mean(gaps.values()):.4f}; drifted set "
        f"{'same' if same else 'DIFFERS ' + ', '.join(flips)} (share {other.share:.0%} vs {full.share:.0%})"
    )


# --- part 2: the drift sensor ------------------------------------------------------------------


def sensor_state(root: Path, spec: PipelineSpec, rows: int) -> dict[str, Any]:
    """Warehouse tables for 30 partitions, and a registry whose champion they were scored against,
    in the default layout of the home folder `root` (`settings.Config.under(root)`)."""
    from ct_assets.lib.core.warehouse import open_connection, replace_partition, transaction
    from ct_assets.lib.data.online_snapshot import MANIFEST
    from ct_assets.lib.model import metrics
    from ct_assets.lib.model.gate import Evaluation
    from ct_assets.lib.model.model_training import FeatureLayout
    from ct_assets.lib.model.records import Environment, GateVerdict, RecordedEvaluation, TrainedModel
    from ct_assets.lib.model.registry import Registry
    from ct_assets.lib.monitor import drift
    from ct_assets.lib.monitor import measures as monitoring

    rng = np.random.default_rng(5)
    names = [f"feature_{i:02d}" for i in range(SENSOR_FEATURES)]
    weights = rng.dirichlet(np.ones(SENSOR_FEATURES))
    importance = {n: float(w) for n, w in zip(names, weights, strict=True)}
    registry = Registry(root / "registry", spec.name)
    version = registry.register(
        TrainedModel(
            pipeline=spec.name,
            model_sha256="0" * 64,
            params={},
            seed=0,
            thread_count=1,
            best_iteration=0,
            training_cpu_seconds=0.0,
            threshold=0.35,
            layout=FeatureLayout(categorical=names[:20], numeric=names[20:]),
            dataset_version="planted",
            dataset_path="",
            partitions={"train": [], "validation": [], "holdout": []},
            rows={},
            label_rate={},
            feature_importance=importance,
            feature_version="planted",
            feature_definitions={},
            environment=Environment(python=platform.python_version(), libraries={}, code_version="bench"),
        )
    )
    holdout = metrics.Metrics(
        rows=1000, positive_rate=0.2, auc=0.7, f1=0.4, log_loss=0.45, brier=0.15, ece=0.02
    )
    registry.update(
        version,
        evaluation=RecordedEvaluation(holdout_partitions=[], against=None, candidate=holdout, champion=None),
        verdict=GateVerdict(passed=True, reasons=[]),
    )
    registry.promote(version, who="bench/monitoring.py", why="benchmark state")

    keys = [(date(2013, 6, 1) + timedelta(days=d)).isoformat() for d in range(SENSOR_PARTITIONS)]
    segments = [f"origin={o}" for o in spec.columns["origin"].allowed or []]
    segments += [f"carrier={c}" for c in spec.columns["carrier"].allowed or []]
    source = "champion re-scoring (no serving log yet)"
    con = open_connection(root / "warehouse.duckdb", threads=2)
    try:
        for index, key in enumerate(keys):
            late = index >= len(keys) - 3  # the last three partitions drift, and the AUC slips
            distances = {
                n: round(float(rng.uniform(0.08, 0.4) if late and i < 25 else rng.uniform(0.0, 0.06)), 4)
                for i, n in enumerate(names)
            }
            threshold = {n: round(float(rng.uniform(0.05, 0.09)), 4) for n in names}
            over = {n: d for n, d in distances.items() if d > threshold[n]}
            share = sum(importance[n] for n in over)
            result = monitoring.DriftResult(rows, share, over)
            summary = pd.DataFrame(
                [
                    {
                        "champion_version": version,
                        "rows": rows,
                        "drift_share": share,
                        "drifted": json.dumps(distances),
                        "skipped": None,
                        "label_rate": float(rng.uniform(0.18, 0.26)),
                        "reference_label_rate": 0.21,
                        "prediction_hellinger": float(rng.uniform(0.01, 0.08)),
                        "description": result.describe(),
                    }
                ]
            ).astype(
                {
                    "drift_share": "float64",
                    "label_rate": "float64",
                    "reference_label_rate": "float64",
                    "prediction_hellinger": "float64",
                }
            )
            columns = pd.DataFrame(
                [
                    drift.ColumnDrift(
                        n,
                        "categorical" if i < 20 else "numeric",
                        rows,
                        distances[n],
                        float(rng.uniform(0, 0.1)),
                        float(rng.uniform(0, 1)),
                        0.01,
                        0.01,
                        [],
                    ).as_dict()
                    | {"threshold": threshold[n], "new_values": "[]"}
                    for i, n in enumerate(names)
                ]
            )
            auc = 0.68 if late else float(rng.uniform(0.7, 0.72))

            def scored(auc: float, count: int) -> metrics.Metrics:
                return metrics.Metrics(count, 0.21, auc, 0.4, 0.5, 0.16, 0.02)

            evaluation = Evaluation(
                scored(auc, rows),
                {s: scored(auc + float(rng.normal(0, 0.02)), rows // len(segments)) for s in segments},
            )
            live = pd.DataFrame(monitoring.evaluation_rows(key, version, source, evaluation))
            with transaction(con):
                for table, frame in (("drift_summary", summary), ("drift_columns", columns), ("live", live)):
                    con.register("_bench", frame)
                    target = "live_performance" if table == "live" else table
                    replace_partition(con, spec.name, target, key, "SELECT * FROM _bench")
                    con.unregister("_bench")
        counts = {
            table: con.execute(f"SELECT count(*) FROM {spec.name}.{table}").fetchall()[0][0]
            for table in ("drift_summary", "drift_columns", "live_performance")
        }
        con.execute("CHECKPOINT")
    finally:
        con.close()
    # every partition's ingest has finished: the online snapshot the sensors wait for is as of the last one
    snapshot = root / "online" / spec.name
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / MANIFEST).write_text(json.dumps({"as_of_partition": keys[-1]}))
    return {"counts": counts, "version": version}


def drift_itself(spec: PipelineSpec, args: argparse.Namespace) -> None:
    """What one partition's drift costs with 50 features: read two profiles, score, decide."""
    from ct_assets.lib.data import profiles
    from ct_assets.lib.monitor import measures as monitoring

    numeric = SENSOR_FEATURES - 20
    cardinalities = tuple(int(c) for c in np.linspace(5, 300, 20))
    frames = [
        generate(args.drift_rows, seed=200 + i, numeric=numeric, cardinalities=cardinalities)
        for i in range(args.window + 1)
    ]
    categorical, numeric_columns, kinds = split_kinds(frames[0])
    bench_spec = spec_with_features(spec, kinds)
    views = [
        profiles.profile(as_str(profiles.prepare(f, categorical, numeric_columns), categorical))
        for f in frames
    ]
    built, ref = timed(lambda: monitoring.reference(views[:-1], bench_spec))
    reference_blob, target_blob = ref.view.serialize(), views[-1].serialize()
    importance = {c: 1.0 / len(kinds) for c in kinds}

    def read() -> tuple[DatasetProfileView, DatasetProfileView]:
        return profiles.deserialize(reference_blob), profiles.deserialize(target_blob)

    def score(reference: Reference, target: DatasetProfileView) -> DriftResult:
        return monitoring.score_drift(reference, target, args.drift_rows, bench_spec, importance)

    from ct_assets.lib.monitor import drift

    reads, scores, hellinger_only = [], [], []
    for _ in range(5):
        seconds, (reference_view, target_view) = timed(read)
        reads.append(seconds)
        loaded = monitoring.Reference(reference_view, ref.thresholds, ref.label_rate)
        scores.append(timed(lambda loaded=loaded, target_view=target_view: score(loaded, target_view))[0])
        hellinger_only.append(
            timed(
                lambda rv=reference_view, tv=target_view: drift.partition_drift(
                    rv, tv, kinds, spec.monitoring.min_rows, with_tests=False
                )
            )[0]
        )
    total = statistics.median(reads) + statistics.median(scores)
    print(
        f"drift itself, one partition x {len(kinds)} features ({len(numeric_columns)} numeric, "
        f"{len(categorical)} categorical; profiles of {args.drift_rows:,} rows, reference = merge of "
        f"{args.window}): median of 5"
    )
    print(
        f"  read reference + partition profiles (deserialize "
        f"{len(reference_blob) + len(target_blob):,} bytes): {statistics.median(reads):.3f} s"
    )
    print(
        f"  monitoring.score_drift (Hellinger + whylogs KS/chi-square tests + thresholds): "
        f"{statistics.median(scores):.3f} s, of which Hellinger alone (with_tests=False): "
        f"{statistics.median(hellinger_only):.3f} s"
    )
    print(f"  per tick if the sensor computed drift: {total:.3f} s; {verdict(total, TICK_TARGET_SECONDS)}")
    print(
        f"  reference + calibrated thresholds (once per champion, cached by the drift asset): {built:.2f} s"
    )


def sensor(spec: PipelineSpec, args: argparse.Namespace, root: Path) -> None:
    """The code location's own sensors (`ct_assets.definitions`), its resources pointed at `root`."""
    import dagster as dg

    from ct_assets.app import code_location
    from ct_assets.lib.core import names
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.model.registry import Registry
    from ct_assets.lib.monitor import steps as monitor_steps
    from ct_assets.lib.monitor.retrain_policy import Expectation, drift_decision

    print(f"== Part 2: one drift sensor tick, {SENSOR_FEATURES} features x {SENSOR_PARTITIONS} partitions ==")
    built, state = timed(lambda: sensor_state(root, spec, args.rows))
    for variable in ("CT_WAREHOUSE", "CT_LANDING", "CT_REGISTRY"):
        os.environ.pop(variable, None)
    os.environ["CT_HOME"] = str(root)  # the code location's default resources: the home folder's layout
    defs = code_location.definitions()
    resources = code_location.resources()
    print(
        f"state in {root}: {state['counts']} rows, champion {state['version']} (built in {built:.1f} s); "
        f"load average {load_average()}"
    )
    instance = dg.DagsterInstance.ephemeral()

    def tick(name: str, cursor: str | None) -> Any:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=resources, repository_def=defs.get_repository_def()
        )
        return defs.resolve_sensor_def(name).evaluate_tick(context)

    def series(label: str, name: str, cursor: str | None) -> Any:
        first, result = timed(lambda: tick(name, cursor))
        runs = [timed(lambda: tick(name, cursor))[0] for _ in range(args.ticks)]
        median = statistics.median(runs)
        outcome = (
            f"run request: {result.run_requests[0].tags['ct/reason']}"
            if result.run_requests
            else f"skip: {result.skip_message}"
        )
        print(
            f"{label}: first {first * 1000:.1f} ms; median of {args.ticks} {median * 1000:.1f} ms, "
            f"worst {max(runs) * 1000:.1f} ms; {verdict(median, TICK_TARGET_SECONDS)}"
        )
        print(f"  -> {outcome[:150]}")
        return result

    drift_sensor = names.sensor_name(spec.name, "drift")
    fired = series("drift sensor, requests a retrain (no cursor)", drift_sensor, None)
    series("drift sensor, cooling down (cursor of that request)", drift_sensor, fired.cursor)
    series("performance sensor, quiet", names.sensor_name(spec.name, "performance"), None)

    warehouse, registry = resources["warehouse"], resources["registry"]
    store = Registry(Path(registry.root), spec.name)
    rules = spec.monitoring

    def parts() -> dict[str, float]:
        found: dict[str, float] = {}
        found["registry.champion()"], record = timed(store.champion)
        found["open DuckDB read-only"], con = timed(
            lambda: open_connection(warehouse.path, read_only=True, retries=1)
        )
        count = max(rules.confirm_window, rules.performance_window)
        found["recent_signals"], signals = timed(
            lambda: monitor_steps.recent_signals(con, spec, count, record.version)
        )
        found["partitions_since"], _ = timed(lambda: monitor_steps.partitions_since(con, spec, "2013-06-28"))
        found["close"], _ = timed(con.close)
        found["drift_decision"], _ = timed(lambda: drift_decision(signals, Expectation(0.7), rules))
        context = dg.build_sensor_context(instance=instance, resources=resources)
        found["the drift sensor's function without Dagster's evaluate_tick (fires)"], _ = timed(
            lambda: defs.resolve_sensor_def(drift_sensor)(context)
        )
        return found

    samples = [parts() for _ in range(args.ticks)]
    print(
        f"tick parts, median of {args.ticks}: "
        + "; ".join(
            f"{name} {statistics.median(s[name] for s in samples) * 1000:.2f} ms" for name in samples[0]
        )
    )
    drift_itself(spec, args)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the profiled partition")
    parser.add_argument(
        "--sample-fractions",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[0.05, 0.1, 0.2],
        help="sampling options to try, comma separated",
    )
    parser.add_argument("--window", type=int, default=7, help="partitions in a reference window")
    parser.add_argument("--window-rows", type=int, default=100_000, help="rows per reference partition")
    parser.add_argument("--drift-rows", type=int, default=50_000, help="rows per 50-feature profile")
    parser.add_argument("--ticks", type=int, default=20, help="timed sensor ticks after the first")
    parser.add_argument("--skip-profile", action="store_true", help="skip part 1")
    parser.add_argument("--skip-sensor", action="store_true", help="skip part 2")
    parser.add_argument("--keep", action="store_true", help="keep the temporary sensor state")
    args = parser.parse_args(argv)
    quiet()

    import whylogs

    from ct_assets.lib.core.spec import load_spec

    spec = load_spec(SPEC_PATH)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, pandas {pd.__version__}, "
        f"whylogs {whylogs.__version__}; load average {load_average()} (other work on this machine "
        "skews the timings)"
    )
    if not args.skip_profile:
        profiling(spec, args)
    if not args.skip_sensor:
        root = Path(tempfile.mkdtemp(prefix="ct_bench_monitoring_"))
        try:
            sensor(spec, args, root)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
