"""Adaptive batching: requests scored together get exactly what each gets alone, requests that share
flights are never featurized in one query, waiting requests are merged, and one failing request
does not fail the others. Real DuckDB feature SQL on a featurized day, a real CatBoost model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import ModelParams
from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.model.model_training import FeatureLayout, train
from ct_assets.lib.serving import arrow_request
from ct_assets.lib.serving.adaptive_batch import AdaptiveBatcher, score_together
from ct_assets.lib.serving.predictor import Predictor
from ct_assets.lib.serving.request_parsing import MAX_BATCH_ROWS, TypedRequest
from ct_assets.lib.serving.scoring import Scored
from ct_assets_tests.lib.serving.test_predictor import DAY, featurized, request_rows  # noqa: F401 - the fixture


@dataclass(frozen=True)
class World:
    predictor: Predictor
    con: duckdb.DuckDBPyConnection  # the featurized warehouse, where request rows come from


@pytest.fixture
def world(featurized, flights_spec) -> World:  # noqa: F811
    con, snapshot = featurized
    rows = con.execute(partition_view_sql(flights_spec.name, "features", [DAY])).df()
    layout = FeatureLayout.of(flights_spec)
    half = len(rows) // 2
    model = train(rows[:half], rows[half:], flights_spec, layout, ModelParams(iterations=40, depth=4))
    return World(Predictor(flights_spec, snapshot, model, layout, threshold=0.5), con)


def _requests(predictor: Predictor, rows: list[dict], sizes: list[int]) -> list[TypedRequest]:
    """Consecutive slices of `rows`, alternately as row-oriented JSON and as an Arrow stream."""
    requests, start = [], 0
    for index, size in enumerate(sizes):
        part = rows[start : start + size]
        start += size
        if index % 2:
            requests.append(predictor.check_arrow(arrow_request.encode_rows(predictor.spec, part)))
        else:
            requests.append(predictor.check_rows(part))
    return requests


def _same(together: Scored | BaseException, alone: Scored, entity_id: str) -> None:
    assert isinstance(together, Scored), together
    assert together.probabilities == alone.probabilities
    assert together.decisions == alone.decisions
    assert together.features.column(entity_id) == alone.features.column(entity_id)
    assert together.features.names == alone.features.names
    assert together.features.rows == alone.features.rows
    assert together.request_id != alone.request_id


def _score_all(
    predictor: Predictor, requests: list[TypedRequest], max_rows: int = MAX_BATCH_ROWS
) -> tuple[list[Scored | BaseException], list[int]]:
    """Submit every request to one batcher before its task first runs (so they all wait together);
    (each request's Scored or exception, the number of requests in each feature query)."""
    batches: list[int] = []

    async def run() -> list[Scored | BaseException]:
        batcher = AdaptiveBatcher(predictor, max_rows=max_rows, on_batch=batches.append)
        try:
            return await asyncio.gather(*(batcher.score(r) for r in requests), return_exceptions=True)
        finally:
            batcher.close()

    return asyncio.run(run()), batches


def test_scored_together_equals_scored_alone(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 120)
    requests = _requests(predictor, rows, [1, 37, 2, 50, 30])
    alone = [predictor.score(request) for request in requests]
    together = score_together(predictor, [(request, time.perf_counter()) for request in requests])
    assert len(together) == len(requests)
    for merged, single in zip(together, alone, strict=True):
        _same(merged, single, flights_spec.entity_id)
    # Each keeps its own segments and event times, in its own row order.
    assert together[3].event_times.to_pylist() == requests[3].arrow_column("sched_dep_at").to_pylist()
    assert together[2].segments["origin"] == requests[2].column("origin")


def test_waiting_requests_are_merged_and_answered_in_their_own_order(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 200)
    requests = _requests(predictor, rows, [40, 1, 60, 20, 79])
    results, batches = _score_all(predictor, requests)
    assert batches == [len(requests)]  # one feature query for all
    for result, request in zip(results, requests, strict=True):
        _same(result, predictor.score(request), flights_spec.entity_id)


def test_requests_sharing_flights_are_not_featurized_together(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 60)
    # The second and the fourth repeat flights of the first (a retry, say); the third is new.
    requests = [
        predictor.check_rows(rows[:30]),
        predictor.check_arrow(arrow_request.encode_rows(flights_spec, rows[10:20])),
        predictor.check_rows(rows[30:60]),
        predictor.check_rows(rows[:5]),
    ]
    results, batches = _score_all(predictor, requests)
    assert batches == [2, 2]  # first and third, then the two that waited (they share no flight)
    for result, request in zip(results, requests, strict=True):
        _same(result, predictor.score(request), flights_spec.entity_id)


def test_max_rows_splits_batches(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 90)
    requests = _requests(predictor, rows, [30, 30, 30])
    results, batches = _score_all(predictor, requests, max_rows=60)
    assert batches == [2, 1]
    assert [len(r.probabilities) for r in results if isinstance(r, Scored)] == [30, 30, 30]


def test_a_failing_request_does_not_fail_the_ones_beside_it(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 43)
    good = [predictor.check_rows(rows[:20]), predictor.check_rows(rows[20:40])]
    # A request that skipped the rules: a distance that is text, which the feature SQL cannot cast.
    table = predictor.check_arrow(arrow_request.encode_rows(flights_spec, rows[40:])).table
    text = pa.array(["far", "near", "10"], type=pa.string())
    broken = TypedRequest(table=table.set_column(table.schema.get_field_index("distance"), "distance", text))

    (first, failed, second), batches = _score_all(predictor, [good[0], broken, good[1]])
    assert batches == [3]  # merged, failed, then each scored alone
    assert isinstance(failed, Exception) and "far" in str(failed)
    _same(first, predictor.score(good[0]), flights_spec.entity_id)
    _same(second, predictor.score(good[1]), flights_spec.entity_id)


def test_a_cancelled_request_is_skipped(world: World, flights_spec) -> None:
    predictor = world.predictor
    rows = request_rows(world.con, flights_spec, DAY, 20)
    requests = _requests(predictor, rows, [10, 10])
    batches: list[int] = []

    async def run() -> Scored:
        batcher = AdaptiveBatcher(predictor, on_batch=batches.append)
        try:
            gone = asyncio.ensure_future(batcher.score(requests[0]))
            kept = asyncio.ensure_future(batcher.score(requests[1]))
            await asyncio.sleep(0)  # both wait; the batcher's task has not taken them yet
            gone.cancel()
            return await kept
        finally:
            batcher.close()

    result = asyncio.run(run())
    assert batches == [1]
    _same(result, predictor.score(requests[1]), flights_spec.entity_id)
