"""Serving benchmark, in process: CatBoost alone (the baselines) and the full path a service worker
runs per request (`Predictor`: request rules, feature SQL, CatBoost), with its steps, for one row
and for a batch, and the CPU the background log writer spends per request."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from serving_setup import World


def wall_times(function: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeat` calls, after `warmup` calls."""
    for _ in range(warmup):
        function()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


def _cpu_times(
    function: Callable[[], Any], repeat: int, warmup: int = 1, clock: Callable[[], float] = time.thread_time
) -> list[float]:
    """CPU seconds of `repeat` calls (less sensitive than wall time to other work on the machine): this
    thread's by default; `clock=time.process_time` for code that runs its own threads (CatBoost)."""
    for _ in range(warmup):
        function()
    runs = []
    for _ in range(repeat):
        started = clock()
        function()
        runs.append(clock() - started)
    return runs


def in_process(world: World, model: Any, rows: list[dict], single_rows: int, repeat: int) -> dict[str, Any]:
    """Baselines and the full in-process path (what the service runs per request), with its parts,
    for one row and for the batch."""
    from ct_assets.lib.model import model_training
    from ct_assets.lib.serving.prediction_log_schema import requests_table
    from ct_assets.lib.serving.prediction_log_stream import write_options
    from ct_assets.lib.serving.predictor import Predictor
    from ct_assets.lib.serving.request_parsing import MAX_BATCH_ROWS, TypedRequest
    from ct_assets.lib.serving.scoring import Scored, answer, log_scored

    spec = world.spec
    layout = world.record.layout
    out: dict[str, Any] = {"batch_rows": len(rows)}
    # The service keeps one predictor per worker process (snapshot loaded, SQL checked once).
    predictor = Predictor(spec, world.snapshot, model, layout, world.record.threshold)
    engine, scorer, rules = predictor.engine, predictor.scorer, predictor.rules

    class _Captured:
        """Stands in for the writer's queue: keeps what the service hands over."""

        def __init__(self) -> None:
            self.spec, self.batch = spec, {}

        def submit(self, batch: dict[str, Any]) -> None:
            self.batch = batch

    def log_cpu(scored: Scored, together: int) -> float:
        """The log writer's CPU per request (off the request path) when it writes `together` such
        requests as one record batch, as it does with what it gathers (about 20 at 100 requests/s
        over its 0.2 s, and 20 1,000-row requests at its 20,000-row cap): median of `repeat` runs."""
        import pyarrow as pa

        captured = _Captured()
        log_scored(captured, scored, "v")  # type: ignore[arg-type]

        def write() -> None:
            table = requests_table([captured.batch] * together, spec.name, "bench")
            writer = pa.ipc.new_stream(pa.BufferOutputStream(), table.schema, options=write_options())
            writer.write_table(table)

        return statistics.median(_cpu_times(write, repeat)) / together

    # Batch: CatBoost alone on prepared pandas inputs (the baseline), then each of our steps.
    typed = TypedRequest(rules.check_rows(rows, MAX_BATCH_ROWS))
    features = engine.features(typed)
    inputs = model_training.model_inputs(features.frame(), layout)
    # At one thread and at all cores (-1); process CPU, since CatBoost runs its own threads.
    for threads in (1, -1):
        predict = lambda threads=threads: model.predict_proba(inputs, thread_count=threads)  # noqa: E731
        out[f"batch_predict_t{threads}"] = statistics.median(wall_times(predict, repeat * 4, 3))
        out[f"batch_predict_t{threads}_cpu"] = statistics.median(
            _cpu_times(predict, repeat * 4, 3, clock=time.process_time)
        )
    out["batch_validate"] = statistics.median(
        wall_times(lambda: rules.check_rows(rows, MAX_BATCH_ROWS), repeat)
    )
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    out["batch_validate_columns"] = statistics.median(
        wall_times(lambda: rules.check_columns(columns, MAX_BATCH_ROWS), repeat)
    )
    out["batch_arrow"] = statistics.median(wall_times(lambda: engine.arrow(typed), repeat))
    out["batch_features"] = statistics.median(wall_times(lambda: engine.features(typed), repeat))
    out["batch_score"] = statistics.median(wall_times(lambda: scorer.probabilities(features), repeat))
    out["batch_full"] = statistics.median(wall_times(lambda: predictor.rows(rows), repeat))
    out["batch_full_cpu"] = statistics.median(_cpu_times(lambda: predictor.rows(rows), repeat))
    out["batch_full_columns"] = statistics.median(wall_times(lambda: predictor.columns(columns), repeat))
    scored = predictor.rows(rows)
    out["batch_full_probabilities"] = scored.probabilities
    out["batch_log"] = log_cpu(scored, 20)
    out["batch_log_alone"] = log_cpu(scored, 1)
    expected = model_training.score(model, features.frame(), layout)
    out["batch_identical"] = [float(p) for p in expected] == scored.probabilities

    # Single rows: each step timed per call.
    parts: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        parts.setdefault(name, []).append(seconds)

    singles = rows[:single_rows]
    for row in singles[:5]:  # warm-up
        predictor.rows([row])
    for row in singles:
        started = time.perf_counter()
        typed_one = TypedRequest(rules.check_rows([row], MAX_BATCH_ROWS))
        add("validate", time.perf_counter() - started)
        started = time.perf_counter()
        features_one = engine.features(typed_one)
        add("features", time.perf_counter() - started)
        started = time.perf_counter()
        scorer.probabilities(features_one)
        add("score", time.perf_counter() - started)
        started = time.perf_counter()
        scored_one = predictor.rows([row])
        add("full", time.perf_counter() - started)
        started = time.perf_counter()
        answer(scored_one, "v", "bench", 0.5, spec.entity_id)
        add("answer", time.perf_counter() - started)
        inputs_one = model_training.model_inputs(features_one.frame(), layout)
        started = time.perf_counter()
        model.predict_proba(inputs_one)
        add("catboost", time.perf_counter() - started)
    out["single"] = parts
    out["single_log"] = log_cpu(scored_one, 20)
    return out
