"""Adaptive batching for a service worker: requests that wait are scored together.

A worker scores one batch at a time on its own thread, while its event loop keeps reading,
checking and answering requests (DuckDB and CatBoost let go of the GIL for parts of their work, so
the two partly overlap). Whatever arrived while a batch was being scored forms the next batch.
Under light load a request is scored alone and waits for nothing; under concurrent load N waiting
requests cost one feature query and one CatBoost call. That is where batching pays here: DuckDB
binds and plans every query anew, a fixed cost per query that merged requests share.

Requests are merged in arrival order up to `max_rows` rows. A request whose entity ids are already
in the batch waits for the next one (the feature SQL joins its groups on the entity id, so ids must
be unique within a query). If a merged batch fails, each of its requests is scored alone, so one
request cannot fail another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ct_assets.lib.serving.feature_engine import FeatureRows
from ct_assets.lib.serving.predictor import Predictor
from ct_assets.lib.serving.request_parsing import MAX_BATCH_ROWS, TypedRequest
from ct_assets.lib.serving.scoring import Scored


@dataclass
class _Waiting:
    request: TypedRequest
    started: float
    future: asyncio.Future[Scored]


class AdaptiveBatcher:
    """Scores checked requests for one worker's event loop, merging those that wait (see module)."""

    def __init__(
        self,
        predictor: Predictor,
        max_rows: int = MAX_BATCH_ROWS,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_rows = max_rows
        self.on_batch = on_batch  # called with each batch's number of requests (the slot's metrics)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct-batch")
        self._waiting: list[_Waiting] = []
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    async def score(self, request: TypedRequest, started: float | None = None) -> Scored:
        """Score `request` (already checked), alone or with others that wait beside it."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(request, time.perf_counter() if started is None else started, loop.create_future())
        self._waiting.append(waiting)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await waiting.future

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Waiting] = []
        try:
            while self._waiting:
                batch = self._take()
                if not batch:
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                outcomes = await loop.run_in_executor(self._thread, self._score_batch, batch)
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    if waiting.future.done():  # the caller went away (cancelled)
                        continue
                    if isinstance(outcome, BaseException):
                        waiting.future.set_exception(outcome)
                    else:
                        waiting.future.set_result(outcome)
                batch = []
        except BaseException as err:  # a bug or a shutdown here must not leave callers waiting
            for waiting in [*batch, *self._waiting]:
                if not waiting.future.done():
                    waiting.future.set_exception(RuntimeError(f"the request batcher stopped: {err!r}"))
            self._waiting = []
            raise

    def _take(self) -> list[_Waiting]:
        """The next batch: waiting requests in arrival order, up to `max_rows` rows (at least one
        request), none sharing an entity id with another; the rest keep waiting in order."""
        batch: list[_Waiting] = []
        kept: list[_Waiting] = []
        rows = 0
        for waiting in self._waiting:
            if waiting.future.done():  # cancelled while it waited
                continue
            count = len(waiting.request)
            if batch and rows + count > self.max_rows:
                kept.append(waiting)
            else:
                batch.append(waiting)
                rows += count
        if len(batch) > 1:
            batch, shared = _without_shared_ids(batch, self.predictor.spec.entity_id)
            if shared:
                order = {id(w): i for i, w in enumerate(self._waiting)}
                kept = sorted(shared + kept, key=lambda w: order[id(w)])
        self._waiting = kept
        return batch

    def _score_batch(self, batch: list[_Waiting]) -> list[Scored | BaseException]:
        """On the batch thread: every request's Scored, or the exception that request raised."""
        self.predictor.engine.reload_if_new()
        if len(batch) > 1:
            try:
                return list(score_together(self.predictor, [(w.request, w.started) for w in batch]))
            except Exception:  # scored alone below, where the failing request is found
                pass
        outcomes: list[Scored | BaseException] = []
        for waiting in batch:
            try:
                outcomes.append(self.predictor.score(waiting.request, waiting.started))
            except Exception as err:  # handed to that request's caller
                outcomes.append(err)
        return outcomes


def score_together(predictor: Predictor, requests: list[tuple[TypedRequest, float]]) -> list[Scored]:
    """Score several checked requests (no entity id in two of them) with one feature query and one
    CatBoost call; each gets its own Scored, its latency counted from its own start."""
    import pyarrow as pa

    engine = predictor.engine
    # Every table has the spec's Arrow types (`FeatureEngine.arrow`); if one did not, concatenating
    # would fail and the batcher would score each request alone.
    merged = TypedRequest(table=pa.concat_tables([engine.arrow(request) for request, _ in requests]))
    features = engine.features(merged)
    if features.table is None:  # several rows are always featurized as a table
        raise RuntimeError("merged requests were featurized without a table")
    probabilities = predictor.scorer.probabilities(features)
    results = []
    offset = 0
    for request, started in requests:
        count = len(request)
        part = FeatureRows(features.names, table=features.table.slice(offset, count))
        results.append(predictor.scored(request, part, probabilities[offset : offset + count], started))
        offset += count
    return results


def _without_shared_ids(batch: list[_Waiting], entity_id: str) -> tuple[list[_Waiting], list[_Waiting]]:
    """(requests that can be featurized in one query, those that must wait): a request whose ids
    are already in the batch waits. All ids distinct, the usual case, is one pass."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = [waiting.request.arrow_column(entity_id) for waiting in batch]
    merged = pa.concat_arrays(ids)
    if pc.count_distinct(merged).as_py() == len(merged):
        return batch, []
    taken, taken_ids, shared = [batch[0]], [ids[0]], []
    for waiting, theirs in zip(batch[1:], ids[1:], strict=True):
        if pc.any(pc.is_in(theirs, value_set=pa.concat_arrays(taken_ids))).as_py():
            shared.append(waiting)
        else:
            taken.append(waiting)
            taken_ids.append(theirs)
    return taken, shared
