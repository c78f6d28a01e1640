"""Benchmark of the serving path: a real bento of a real champion behind the real HAProxy.

Setup (the same library calls the serving tests make, into a temporary folder that is removed at
the end unless `--keep`): the flights spec with `training.min_rows = 500` and
`training.window_partitions = 8`; 8 days of 2013 flights landed (`demo_source`), then
`data_steps.load_context`, `ingest_raw`, `validate_partition`, `materialize_group`,
`build_features`; a champion trained, registered and promoted (`model_steps.freeze_training_set`,
`train_candidate`, `Registry.promote`); the online snapshot published (`online_snapshot.publish`,
48 hours); a bento built (`bento_build.build`, with BENTOML_HOME in the temporary folder); and
a first deployment (`rollout.Deployment.rollout`), which starts HAProxy and `bentoml serve` in the
blue slot on ports from the OS. The slot and the proxy are always shut down at the end.

Measured, each figure printed as a ratio to in-process CatBoost (`predict_proba` on the same rows'
prepared model inputs, measured in this run); the ratio always names what it is compared with:

(a) single-row latency p50/p99 at a fixed request rate (default 100 requests/s for 20 s) from an
    open-loop sender (each request is scheduled at a fixed time, whatever the earlier ones do;
    latency counts from the scheduled time, so queueing is included, also waiting for a free
    connection), through the proxy and straight to the slot. `--sender light` (default): asyncio
    streams, HTTP/1.1 keep-alive over `--connections` connections (default 8), only the status
    line and Content-Length parsed; `--sender httpx`: httpx's async client (about 1-2 ms of CPU per
    request on 2 cores, taken from the server under test); `--sender both`. The sender's own CPU
    per request (this process's CPU during the run / requests) is printed beside the figures;
(b) batch throughput in rows/s with 1,000-row requests: row-oriented JSON (`/predict`),
    column-oriented JSON (`/predict_columns`) and, if the service has it (skipped with a note on a
    404), an Arrow IPC stream (`/predict_arrow`), through the proxy and straight to the slot; each
    with one client sending `--batch-requests` requests one after another, and with each count of
    `--batch-clients` (default 8 and 32) concurrent clients each sending as many back to back (the
    light client on one event loop, one connection each; each client its own flights, the ids
    suffixed, so the service's adaptive batching can merge them); rows/s over the wall time of the
    run. Every answer is checked (row count, ids in order);
(c) in-process baselines: CatBoost `predict_proba` alone at `thread_count=1` and at
    `thread_count=-1` (all cores), the faster of the two being the baseline for throughput ratios,
    and the full in-process path that a service worker runs per request (`serving.Predictor`:
    compiled request rules, the feature SQL, CatBoost), for one row and for 1,000 rows, with its
    steps, and the CPU the background log writer spends per request.

Then where the time goes in one single-row request: validation, features and scoring measured in
process, the service's own latency (`latency_ms` from the prediction log, matched by request id),
BentoML + HTTP, and the HAProxy hop. `--workers N` sets the slot's worker processes
(CT_SERVICE_WORKERS; default the service's, one per core).
Targets: single-row p99 under 10 ms at 100 requests/s through the proxy; batch throughput (the
best variant through the proxy, for one client and for N clients) at least a third of in-process
CatBoost (the faster thread count). The load average is printed because other work on the
machine skews timings.

Run: `uv run python bench/serving.py` (about 1.5-4 minutes on 2 cores, depending on other work;
`--sender both` adds about 45 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from ct_assets.lib.core.spec import PipelineSpec
    from ct_assets.lib.model.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
DAYS = [f"2013-01-0{d}" for d in range(1, 9)]
JSON_HEADERS = {"content-type": "application/json"}
ARROW_STREAM = "application/vnd.apache.arrow.stream"
# The spec's column types as Arrow types (as the service's feature engine registers them).
P99_TARGET_MS = 10.0
THROUGHPUT_TARGET = 1 / 3


# --- small helpers ------------------------------------------------------------------------------


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def _free_ports(count: int) -> list[int]:
    """Ports the OS hands out for port 0 (all bound at once, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def _ms(seconds: float) -> float:
    return seconds * 1000


def _times(function: Callable[[], Any], repeat: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeat` calls, after `warmup` calls."""
    for _ in range(warmup):
        function()
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return runs


# --- setup: warehouse, champion, snapshot, bento ------------------------------------------------


@dataclass
class World:
    root: Path
    spec: PipelineSpec
    con: duckdb.DuckDBPyConnection
    registry: Registry
    record: dict[str, Any]
    bento: str
    snapshot: Path
    log_folder: Path
    setup_seconds: dict[str, float] = field(default_factory=dict)


def write_spec_variant(folder: Path, change: dict[str, Any]) -> Path:
    """A copy of the flights spec and its SQL in `folder`, with dotted keys changed."""
    import yaml

    raw = yaml.safe_load(SPEC_PATH.read_text())
    for dotted, value in change.items():
        target = raw
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    (folder / "features").mkdir(parents=True, exist_ok=True)
    for sql in (SPEC_PATH.parent / "features").glob("*.sql"):
        shutil.copyfile(sql, folder / "features" / sql.name)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def build_world(root: Path) -> World:
    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.data import demo_source, online_snapshot
    from ct_assets.lib.model import steps as model_steps
    from ct_assets.lib.model.backtest import build_features
    from ct_assets.lib.model.registry import Registry
    from ct_assets.lib.serving import bento_build

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    spec = load_spec(
        write_spec_variant(
            root / "pipelines" / "flights_delay", {"training.min_rows": 500, "training.window_partitions": 8}
        )
    )
    landing = root / "landing"
    demo_source.land_context(landing, spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(landing, spec.name, day)
    con = open_connection(root / "warehouse.duckdb")
    build_features(con, spec, landing, DAYS)  # the data layer's library steps, as the assets run them
    seconds["features"] = time.perf_counter() - started

    started = time.perf_counter()
    registry = Registry(root / "registry", spec.name)
    candidate = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(candidate.version, verdict={"passed": True, "reasons": [], "notes": ["benchmark"]})
    registry.promote(candidate.version, who="bench", why="serving benchmark")
    record = registry.champion()
    assert record is not None
    seconds["training"] = time.perf_counter() - started

    started = time.perf_counter()
    snapshot = root / "online"
    online_snapshot.publish(con, spec, DAYS[-1], snapshot, history_hours=48)
    bento = bento_build.build(spec, record, registry.models / f"{record['model_sha256']}.cbm")
    seconds["bento"] = time.perf_counter() - started
    return World(root, spec, con, registry, record, str(bento.tag), snapshot, root / "log", seconds)


def request_rows(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, days: list[str], limit: int
) -> list[dict]:
    """What a caller sends: validated rows without post-event columns, as JSON (latest first)."""
    from ct_assets.lib.core.warehouse import partition_view_sql, quote
    from ct_assets.lib.serving import predictor as serving

    frame = con.execute(
        partition_view_sql(spec.name, "validated", days)
        + f" ORDER BY {quote(spec.timestamp_column)} DESC, {quote(spec.entity_id)} LIMIT {limit}"
    ).df()
    frame = frame[list(serving.request_columns(spec))]
    return json.loads(frame.to_json(orient="records", date_format="iso"))


# --- (c) in process ------------------------------------------------------------------------------


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
    from ct_assets.lib.model.model_training import FeatureLayout
    from ct_assets.lib.serving import predictor as serving
    from ct_assets.lib.serving.prediction_log import requests_table, write_options

    spec = world.spec
    layout = FeatureLayout(**world.record["layout"])
    out: dict[str, Any] = {"batch_rows": len(rows)}
    # The service keeps one predictor per worker process (snapshot loaded, SQL checked once).
    predictor = serving.Predictor(spec, world.snapshot, model, layout, float(world.record["threshold"]))
    engine, scorer, rules = predictor.engine, predictor.scorer, predictor.rules

    class _Captured:
        """Stands in for the writer's queue: keeps what the service hands over."""

        def __init__(self) -> None:
            self.spec, self.batch = spec, {}

        def submit(self, batch: dict[str, Any]) -> None:
            self.batch = batch

    def log_cpu(scored: serving.Scored, together: int) -> float:
        """The log writer's CPU per request (off the request path) when it writes `together` such
        requests as one record batch, as it does with what it gathers (about 20 at 100 requests/s
        over its 0.2 s, and 20 1,000-row requests at its 20,000-row cap): median of `repeat` runs."""
        import pyarrow as pa

        captured = _Captured()
        serving.log_scored(captured, scored, "v")  # type: ignore[arg-type]

        def write() -> None:
            table = requests_table([captured.batch] * together, spec.name, "bench")
            writer = pa.ipc.new_stream(pa.BufferOutputStream(), table.schema, options=write_options())
            writer.write_table(table)

        return statistics.median(_cpu_times(write, repeat)) / together

    # Batch: CatBoost alone on prepared pandas inputs (the baseline), then each of our steps.
    typed = serving.TypedRequest(rules.check_rows(rows, serving.MAX_BATCH_ROWS))
    features = engine.features(typed)
    inputs = model_training.model_inputs(features.frame(), layout)
    # At one thread and at all cores (-1); process CPU, since CatBoost runs its own threads.
    for threads in (1, -1):
        predict = lambda threads=threads: model.predict_proba(inputs, thread_count=threads)  # noqa: E731
        out[f"batch_predict_t{threads}"] = statistics.median(_times(predict, repeat * 4, 3))
        out[f"batch_predict_t{threads}_cpu"] = statistics.median(
            _cpu_times(predict, repeat * 4, 3, clock=time.process_time)
        )
    out["batch_validate"] = statistics.median(
        _times(lambda: rules.check_rows(rows, serving.MAX_BATCH_ROWS), repeat)
    )
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    out["batch_validate_columns"] = statistics.median(
        _times(lambda: rules.check_columns(columns, serving.MAX_BATCH_ROWS), repeat)
    )
    out["batch_arrow"] = statistics.median(_times(lambda: engine.arrow(typed), repeat))
    out["batch_features"] = statistics.median(_times(lambda: engine.features(typed), repeat))
    out["batch_score"] = statistics.median(_times(lambda: scorer.probabilities(features), repeat))
    out["batch_full"] = statistics.median(_times(lambda: predictor.rows(rows), repeat))
    out["batch_full_cpu"] = statistics.median(_cpu_times(lambda: predictor.rows(rows), repeat))
    out["batch_full_columns"] = statistics.median(_times(lambda: predictor.columns(columns), repeat))
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
        typed_one = serving.TypedRequest(rules.check_rows([row], serving.MAX_BATCH_ROWS))
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
        serving.answer(scored_one, "v", "bench", 0.5, spec.entity_id)
        add("answer", time.perf_counter() - started)
        inputs_one = model_training.model_inputs(features_one.frame(), layout)
        started = time.perf_counter()
        model.predict_proba(inputs_one)
        add("catboost", time.perf_counter() - started)
    out["single"] = parts
    out["single_log"] = log_cpu(scored_one, 20)
    return out


def _tree_cpu(pids: list[int], only: str | None = None) -> dict[int, float]:
    """User + system CPU seconds of each of these processes and all their children (psutil); with
    `only`, of those whose command line contains it."""
    import psutil

    seconds = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            try:
                if only is None or only in " ".join(process.cmdline()):
                    times = process.cpu_times()
                    seconds[process.pid] = times.user + times.system
            except psutil.Error:
                continue
    return seconds


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their children."""
    return sum(_tree_cpu(pids).values())


def worker_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each BentoML worker process under these processes."""
    return _tree_cpu(pids, only="_bentoml_impl.worker")


def worker_shares(before: dict[int, float], after: dict[int, float]) -> str:
    """How a run's CPU split over the slot's workers, busiest first ("71% / 29%"): asyncio accepts
    every pending connection when the shared listening socket wakes it, so one worker can take most
    of the connections and the work."""
    used = sorted((after[pid] - before.get(pid, 0.0) for pid in after), reverse=True)
    total = sum(used)
    return " / ".join(f"{u / total:.0%}" for u in used) if total > 0 else "n/a"


# --- (a) and (b) over HTTP -----------------------------------------------------------------------


@dataclass
class Answer:
    latency: float  # seconds from the scheduled (or actual) send time to the full response
    status: int | str
    request_id: str | None
    lag: float = 0.0  # how late the sender's event loop woke up for it
    waited: float = 0.0  # seconds waiting for a free connection (light sender; part of `latency`)


class LightClient:
    """A light HTTP/1.1 client for the open-loop runs: asyncio streams, keep-alive over a pool of
    `connections` connections (opened on first use, reopened after an error or `Connection: close`),
    POST only; it parses the status line and Content-Length (chunked bodies too), nothing else. A
    request waits for a free connection, and that wait counts in its latency."""

    def __init__(self, url: str, connections: int) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self._free: asyncio.Queue[list[Any]] = asyncio.Queue()
        for _ in range(connections):
            self._free.put_nowait([None, None])  # [reader, writer]

    def _head(self, length: int, content_type: str) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {length}\r\n\r\n"
        ).encode("latin-1")

    @staticmethod
    def _close(connection: list[Any]) -> None:
        if connection[1] is not None:
            connection[1].close()
        connection[0] = connection[1] = None

    async def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, bytes, float]:
        """(status, body, seconds spent waiting for a free connection)."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        connection = await self._free.get()
        waited = loop.time() - asked
        try:
            if connection[1] is None:
                connection[0], connection[1] = await asyncio.open_connection(self.host, self.port)
            reader, writer = connection
            writer.write(self._head(len(body), content_type) + body)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, chunked, close = None, False, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                parts = []
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    parts.append(await reader.readexactly(size + 2))
                await reader.readuntil(b"\r\n")  # no trailers expected
                content = b"".join(part[:-2] for part in parts)
            elif length is not None:
                content = await reader.readexactly(length)
            else:
                content, close = await reader.read(), True
            if close:
                self._close(connection)
            return status, content, waited
        except BaseException:
            self._close(connection)
            raise
        finally:
            self._free.put_nowait(connection)

    async def aclose(self) -> None:
        while not self._free.empty():
            self._close(self._free.get_nowait())


async def _open_loop(
    url: str, bodies: list[bytes], rate: float, duration: float, sender: str, connections: int
) -> tuple[list[Answer], float]:
    import httpx

    count = max(1, round(rate * duration))
    answers: list[Answer | None] = [None] * count
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    client = httpx.AsyncClient(timeout=60, limits=limits) if sender == "httpx" else None
    light = LightClient(url, connections) if sender == "light" else None
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def one(index: int) -> None:
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        sent = loop.time()
        body = bodies[index % len(bodies)]
        try:
            waited = 0.0
            if light is not None:
                status, content, waited = await light.post(body)
            else:
                assert client is not None
                response = await client.post(url, content=body, headers=JSON_HEADERS)
                status, content = response.status_code, response.content
            done = loop.time()
            request_id = json.loads(content).get("request_id") if status == 200 else None
            answers[index] = Answer(done - due, status, request_id, sent - due, waited)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as err:
            answers[index] = Answer(loop.time() - due, type(err).__name__, None, sent - due)

    try:
        await asyncio.gather(*(one(i) for i in range(count)))
        wall = loop.time() - start
    finally:
        if client is not None:
            await client.aclose()
        if light is not None:
            await light.aclose()
    return [a for a in answers if a is not None], wall


def open_loop(
    url: str, bodies: list[bytes], rate: float, duration: float, sender: str, connections: int
) -> tuple[list[Answer], float, float]:
    """Single-row requests at fixed times (`rate` per second for `duration` s), whatever the answers do;
    (answers, wall seconds, this process's CPU seconds per request, i.e. what the sender cost)."""
    cpu = time.process_time()
    answers, wall = asyncio.run(_open_loop(url, bodies, rate, duration, sender, connections))
    return answers, wall, (time.process_time() - cpu) / max(1, len(answers))


def sequential(
    urls: dict[str, str], bodies: list[bytes], count: int, warmup: int = 10
) -> dict[str, list[Answer]]:
    """One request at a time (no queueing), alternating between the routes: the unloaded latency."""
    import httpx

    answers: dict[str, list[Answer]] = {name: [] for name in urls}
    with httpx.Client(timeout=60) as client:
        for index in range(warmup + count):
            body = bodies[index % len(bodies)]
            order = list(urls.items()) if index % 2 == 0 else list(urls.items())[::-1]
            for name, url in order:
                started = time.perf_counter()
                response = client.post(url, content=body, headers=JSON_HEADERS)
                seconds = time.perf_counter() - started
                request_id = response.json().get("request_id") if response.status_code == 200 else None
                if index >= warmup:
                    answers[name].append(Answer(seconds, response.status_code, request_id))
    return answers


def check_json(ids: list[str]) -> Callable[[int, bytes], tuple[str, list[float]]]:
    """Validates a JSON batch answer (row count, ids in order); returns (request id, probabilities)."""

    def check(status: int, content: bytes) -> tuple[str, list[float]]:
        if status != 200:
            raise ValueError(f"status {status}")
        answer = json.loads(content)  # parsed once
        predictions = answer["predictions"]
        if len(predictions) != len(ids) or [p["id"] for p in predictions] != ids:
            raise ValueError(f"{len(predictions)} predictions, ids not the request's")
        return answer["request_id"], [p["probability"] for p in predictions]

    return check


def check_arrow(ids: list[str]) -> Callable[[int, bytes], tuple[str, list[float]]]:
    """Validates an Arrow IPC stream answer (rows, ids in order, the metadata keys)."""

    def check(status: int, content: bytes) -> tuple[str, list[float]]:
        import pyarrow as pa

        if status != 200:
            raise ValueError(f"status {status}")
        table = pa.ipc.open_stream(content).read_all()
        if table.num_rows != len(ids) or table.column("id").to_pylist() != ids:
            raise ValueError(f"{table.num_rows} rows, ids not the request's")
        metadata = table.schema.metadata or {}
        missing = {b"request_id", b"model_version", b"slot"} - set(metadata)
        if missing or table.column("decision").type != pa.bool_():
            raise ValueError(f"metadata keys missing {sorted(missing)} or decision not bool")
        return metadata[b"request_id"].decode(), table.column("probability").to_pylist()

    return check


def client_rows(rows: list[dict[str, Any]], entity_id: str, client: int) -> list[dict[str, Any]]:
    """Client `client`'s copy of the batch: the same rows, ids suffixed from the second client on, so
    concurrent clients send different flights (as separate callers would; the service merges only
    requests with distinct ids) whose features and scores equal the originals'."""
    if client == 0:
        return rows
    return [{**row, entity_id: f"{row[entity_id]}~{client}"} for row in rows]


async def _batch_clients(
    url: str,
    bodies: list[tuple[bytes, Callable[[int, bytes], tuple[str, list[float]]]]],
    content_type: str,
    requests: int,
) -> tuple[list[list[tuple[float, str | None]]], float]:
    clients = [LightClient(url, 1) for _ in bodies]
    ready = asyncio.Event()
    warmed = 0
    results: list[list[tuple[float, str | None]]] = [[] for _ in bodies]

    async def client_loop(index: int) -> None:
        nonlocal warmed
        body, check = bodies[index]
        client = clients[index]
        for _ in range(2):  # warm-up (and the connection opened before the clock starts)
            # a failed warm-up is not counted: the timed requests will fail too, and count as failed
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
                await client.post(body, content_type)
        warmed += 1
        if warmed == len(bodies):
            ready.set()
        await ready.wait()
        for _ in range(requests):
            sent = time.perf_counter()
            request_id = None
            try:
                status, content, _ = await client.post(body, content_type)
                request_id = check(status, content)[0]
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError, TypeError):
                pass
            results[index].append((time.perf_counter() - sent, request_id))

    tasks = [asyncio.ensure_future(client_loop(i)) for i in range(len(bodies))]
    await ready.wait()
    started = time.perf_counter()
    try:
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    return results, time.perf_counter() - started


def batch_run(
    url: str,
    bodies: list[tuple[bytes, Callable[[int, bytes], tuple[str, list[float]]]]],
    content_type: str,
    rows: int,
    requests: int,
) -> dict[str, Any]:
    """One client per (body, check) pair, all on one event loop with the light client (one keep-alive
    connection each), each sending `requests` batch requests back to back after 2 warm-up ones;
    rows/s over the wall time from the common start to the last answer. Each answer is validated by
    its client's `check`; a failed check counts as a failed request."""
    cpu = time.process_time()
    results, wall = asyncio.run(_batch_clients(url, bodies, content_type, requests))
    cpu = time.process_time() - cpu
    done = [item for each in results for item in each]
    ids = [request_id for _, request_id in done if request_id is not None]
    return {
        "rows_per_s": rows * len(ids) / wall,
        "latencies": [seconds for seconds, _ in done],
        "ids": ids,
        "failures": len(done) - len(ids),
        "requests": len(done),
        "sent": len(bodies) * (requests + 2),  # with the warm-up ones
        "client_cpu": cpu / max(1, len(done)),
        "wall": wall,
    }


def server_latencies(log_folder: Path) -> dict[str, float]:
    """The service's own `latency_ms` per request id, from the slots' prediction log."""
    from ct_assets.lib.serving.prediction_log import log_files, read_table

    latencies: dict[str, float] = {}
    for path in log_files(log_folder):
        table = read_table(path)
        if table is not None:
            per_request = table.group_by("request_id").aggregate([("latency_ms", "max")]).to_pydict()
            latencies.update(zip(per_request["request_id"], per_request["latency_ms_max"], strict=True))
    return {request_id: float(ms) for request_id, ms in latencies.items() if ms is not None}


# --- report --------------------------------------------------------------------------------------


def _x(value: float, base: float) -> str:
    return f"{value / base:,.0f}x" if value / base >= 10 else f"{value / base:.1f}x"


def _share(value: float, base: float, what: str = "in-process CatBoost") -> str:
    ratio = value / base if base else float("nan")
    tail = f" = 1/{1 / ratio:,.0f}" if 0 < ratio < 0.1 else ""
    return f"{ratio:.1%} of {what}{tail}"


def _p99_text(value: float) -> str:
    return f"{value:.1f} ms" if value != float("inf") else "unbounded (over 1% failed)"


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report_open_loop(
    name: str,
    sender: str,
    run: tuple[list[Answer], float, float],
    rate: float,
    base: dict[str, float],
    server: dict[str, float],
) -> tuple[bool, float]:
    """Print one route's open-loop figures; return (target met, p99 over all requests)."""
    answers, wall, sender_cpu = run
    ok = [a for a in answers if a.status == 200]
    failed = len(answers) - len(ok)
    latencies = [_ms(a.latency) for a in ok]
    p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
    # Over all requests, a failed one counts as infinitely slow.
    every = sorted([*latencies, *[float("inf")] * failed])
    p99_all = every[min(len(every) - 1, int(0.99 * len(every)))]
    lag = [_ms(a.lag) for a in answers]
    served = [server[a.request_id] for a in ok if a.request_id in server]
    statuses: dict[str, int] = {}
    for a in answers:
        if a.status != 200:
            statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    print(
        f"(a) single-row {name}, {sender} sender, {len(answers)} requests scheduled at {rate:g}/s (open "
        f"loop): {len(ok)} answered, {failed} failed{f' {statuses}' if statuses else ''}; answered ones "
        f"p50 {p50:.1f} ms "
        f"({_x(p50, base['p50'])} in-process CatBoost 1 row p50), p99 {p99:.1f} ms ({_x(p99, base['p99'])} "
        f"in-process CatBoost 1 row p99), max {max(latencies, default=float('nan')):.0f} ms; p99 over all "
        f"requests {_p99_text(p99_all)}; answers {len(ok) / wall:.1f}/s"
    )
    waited = [_ms(a.waited) for a in answers]
    pool = (
        f"; waited for a free connection: {sum(w > 0.1 for w in waited)} requests over 0.1 ms, p99 "
        f"{_pct(waited, 99):.1f} ms (counted in the latency)"
        if sender == "light"
        else ""
    )
    print(
        f"    the sender (this process) used {_ms(sender_cpu):.2f} ms CPU per request = "
        f"{sender_cpu * rate:.0%} of a core at {rate:g} requests/s; its event loop woke late by p99 "
        f"{_pct(lag, 99):.1f} ms{pool}"
    )
    if served:
        print(
            f"    of which the service's own time (validate+features+score, latency_ms): p50 "
            f"{_pct(served, 50):.1f} ms, p99 {_pct(served, 99):.1f} ms; the rest is waiting in BentoML's "
            f"queue, HTTP{' and HAProxy' if 'proxy' in name else ''}"
        )
    return p99_all < P99_TARGET_MS, p99_all  # the printed figure; infinite if over 1% failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="single-row requests per second")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of single-row traffic per route"
    )
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows per batch request")
    parser.add_argument(
        "--batch-requests", type=int, default=30, help="batch requests per variant and route, per client"
    )
    parser.add_argument(
        "--batch-clients",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[8, 32],
        help="concurrent batch clients of the batch runs after the one-client run (comma-separated)",
    )
    parser.add_argument(
        "--sender",
        choices=["light", "httpx", "both"],
        default="light",
        help="open-loop sender: asyncio streams over a small keep-alive pool (light), httpx async, or both",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="keep-alive connections of the light sender"
    )
    parser.add_argument(
        "--single-rows", type=int, default=200, help="single rows timed in process / sequentially"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each in-process batch timing (median)")
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes of the slot (default: the service's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.workers is None:
        from ct_assets.lib.serving.predictor import default_workers

        args.workers = default_workers()
    if (
        args.rate <= 0
        or args.duration <= 0
        or min(args.batch_rows, args.batch_requests, args.single_rows, *args.batch_clients, args.connections)
        < 1
    ):
        parser.error(
            "--rate, --duration, --batch-rows, --batch-requests, --batch-clients, --connections and "
            "--single-rows must be positive"
        )

    root = Path(tempfile.mkdtemp(prefix="ct-bench-serving-"))
    os.environ["BENTOML_HOME"] = str(root / "bentoml")  # before anything imports bentoml
    os.environ["CT_HOME"] = str(root / "home")
    # A SIGTERM runs the cleanup below too (slot, proxy, temporary folder).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import catboost
    import duckdb
    import httpx

    from ct_assets.lib.model.model_store import load_model
    from ct_assets.lib.serving.proxy import ProxyLayout
    from ct_assets.lib.serving.rollout import Deployment, HealthPolicy

    print(
        f"serving benchmark: python {platform.python_version()}, catboost {catboost.__version__}, duckdb "
        f"{duckdb.__version__}, httpx {httpx.__version__}, {os.cpu_count()} CPUs; temporary folder {root}"
    )
    print(f"load average (1/5/15 min) at start: {_load()}")
    deploy: Deployment | None = None
    world: World | None = None
    try:
        world = build_world(root)
        spec = world.spec
        s = world.setup_seconds
        print(
            f"setup: features for {len(DAYS)} days {s['features']:.1f} s, champion {world.record['version']} "
            f"trained {s['training']:.1f} s, snapshot + bento {s['bento']:.1f} s ({world.bento})"
        )
        model = load_model(world.registry.models, world.record["model_sha256"])
        rows = request_rows(world.con, spec, DAYS[-2:], args.batch_rows)
        if len(rows) < args.batch_rows:
            raise RuntimeError(f"only {len(rows)} request rows in {DAYS[-2:]}, asked for {args.batch_rows}")
        compat = rows[:100]
        from ct_assets.lib.serving import steps as deploy_steps

        expected = deploy_steps.reference_scores(world.con, spec, world.record, world.registry, compat, DAYS)

        stable, blue, green = _free_ports(3)
        layout = ProxyLayout(root / "proxy", stable, {"blue": blue, "green": green})
        env = {
            "CT_ONLINE_SNAPSHOT": str(world.snapshot),
            "CT_PREDICTION_LOG": str(world.log_folder),
            "CT_SERVICE_WORKERS": str(args.workers),
        }
        deploy = Deployment(root / "deploy", layout, env, str(Path(sys.executable).parent / "bentoml"))
        started = time.perf_counter()
        result = deploy.rollout(world.bento, (compat, expected), expected, HealthPolicy(), who="bench")
        if result.status != "switched":
            raise RuntimeError(f"first deployment failed: {result.reasons}")
        allocator = httpx.post(f"http://127.0.0.1:{blue}/version", json={}, timeout=30).json()["allocator"]
        print(
            f"deployed: HAProxy on :{stable} -> blue slot on :{blue} ({time.perf_counter() - started:.1f} s "
            f"to start and pass the compatibility check); the slot's allocator: {allocator}"
        )
        urls = {
            "through the proxy": f"http://127.0.0.1:{stable}",
            "straight to the slot": f"http://127.0.0.1:{blue}",
        }

        # (c) in process, first, with nothing else running.
        print(f"load average before in-process baselines: {_load()}")
        inproc = in_process(world, model, rows, args.single_rows, args.repeat)
        single = inproc["single"]
        base = {"p50": _ms(_pct(single["catboost"], 50)), "p99": _ms(_pct(single["catboost"], 99))}
        n = inproc["batch_rows"]
        ms = {k: _ms(v) for k, v in inproc.items() if isinstance(v, float)}
        # The baseline for throughput ratios: the faster of CatBoost at 1 thread and at all cores.
        threads = min((1, -1), key=lambda t: inproc[f"batch_predict_t{t}"])
        catboost_rps = n / inproc[f"batch_predict_t{threads}"]
        baseline = f"in-process CatBoost (thread_count={threads})"
        full_rps = n / inproc["batch_full"]
        full_columns_rps = n / inproc["batch_full_columns"]
        full_p50, full_p99 = _ms(_pct(single["full"], 50)), _ms(_pct(single["full"], 99))
        print()
        for t, label in ((1, "thread_count=1"), (-1, f"thread_count=-1, all {os.cpu_count()} cores")):
            print(
                f"(c) in-process CatBoost predict_proba, {n} rows (prepared inputs), {label}: "
                f"{n / inproc[f'batch_predict_t{t}']:,.0f} rows/s ({ms[f'batch_predict_t{t}']:.2f} ms per "
                f"call, {ms[f'batch_predict_t{t}_cpu']:.2f} ms process CPU)"
                + (" = the FASTER one, the baseline for throughput ratios" if t == threads else "")
            )
        print(
            f"(c) in-process CatBoost predict_proba, 1 row: p50 {base['p50']:.3f} ms, p99 "
            f"{base['p99']:.3f} ms ({len(single['catboost'])} rows) = the baseline for latency ratios"
        )
        print(
            f"(c) in-process full path (serving.Predictor, what a worker runs per request), {n} rows: "
            f"row-oriented {full_rps:,.0f} rows/s = {_share(full_rps, catboost_rps, baseline)} "
            f"({ms['batch_full']:.1f} ms, {ms['batch_full_cpu']:.1f} ms CPU), column-oriented "
            f"{full_columns_rps:,.0f} rows/s = {_share(full_columns_rps, catboost_rps, baseline)}; steps: "
            f"validate rows {ms['batch_validate']:.1f} / columns {ms['batch_validate_columns']:.1f} ms, "
            f"features {ms['batch_features']:.1f} ms (of which the Arrow table {ms['batch_arrow']:.1f}), "
            f"score {ms['batch_score']:.1f} ms; off the request path the log writer spends "
            f"{ms['batch_log']:.2f} ms CPU on its rows (20 requests written together; "
            f"{ms['batch_log_alone']:.2f} ms for one alone); "
            f"probabilities identical to model_training.score: "
            f"{inproc['batch_identical']}"
        )
        print(
            f"(c) in-process full path, 1 row: p50 {full_p50:.2f} ms ({_x(full_p50, base['p50'])} in-process "
            f"CatBoost 1 row p50), p99 {full_p99:.2f} ms ({_x(full_p99, base['p99'])} in-process CatBoost 1 "
            f"row p99); {1000 / full_p50:,.0f} rows/s one at a time"
        )

        # Unloaded single-row latency: one request at a time (for the breakdown).
        bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
        print(f"\nload average before HTTP runs: {_load()}")
        unloaded = sequential(
            {name: f"{url}/predict" for name, url in urls.items()}, bodies, args.single_rows
        )
        with httpx.Client(timeout=30) as client:
            version_times = []
            for index in range(args.single_rows + 10):
                started = time.perf_counter()
                client.post(f"{urls['straight to the slot']}/version", json={})
                if index >= 10:
                    version_times.append(time.perf_counter() - started)

        # (a) open loop at a fixed rate, each sender and route.
        senders = ["light", "httpx"] if args.sender == "both" else [args.sender]
        loaded: dict[tuple[str, str], tuple[list[Answer], float, float]] = {}
        slot_cpu: dict[Any, float] = {}

        def slot_pids() -> list[int]:
            return [int(deploy.state()["slots"]["blue"]["pid"])] if deploy is not None else []

        for sender in senders:
            for name, url in urls.items():
                sequential({name: f"{url}/predict"}, bodies, 0, warmup=10)
                cpu_before = _cpu_seconds(slot_pids())
                run = open_loop(f"{url}/predict", bodies, args.rate, args.duration, sender, args.connections)
                loaded[(sender, name)] = run
                slot_cpu[(sender, name)] = (_cpu_seconds(slot_pids()) - cpu_before) / max(1, len(run[0]))
                print(
                    f"load average after {args.duration:g} s at {args.rate:g} req/s {name} ({sender} "
                    f"sender): {_load()}"
                )
                time.sleep(2)

        # (b) batches: row- and column-oriented JSON, Arrow if the service has it; each route, one
        # client and `--batch-clients` clients.
        from ct_assets.lib.serving import arrow_request

        Check = Callable[[int, bytes], tuple[str, list[float]]]
        Encode = Callable[[list[dict[str, Any]]], bytes]
        encoders: dict[str, tuple[str, Encode, Callable[[list[str]], Check]]] = {
            "/predict": ("application/json", lambda r: json.dumps({"rows": r}).encode(), check_json),
            "/predict_columns": (
                "application/json",
                lambda r: json.dumps({"columns": {key: [row[key] for row in r] for key in r[0]}}).encode(),
                check_json,
            ),
            "/predict_arrow": (ARROW_STREAM, lambda r: arrow_request.encode_rows(spec, r), check_arrow),
        }
        client_counts = sorted({1, *args.batch_clients})
        per_client = [client_rows(rows, spec.entity_id, i) for i in range(client_counts[-1])]
        client_ids = [[str(row[spec.entity_id]) for row in each] for each in per_client]
        ids = client_ids[0]
        pairs = list(zip(per_client, client_ids, strict=True))
        variants: dict[str, tuple[str, list[tuple[bytes, Check]]]] = {
            path: (content_type, [(encode(r), make_check(i)) for r, i in pairs])
            for path, (content_type, encode, make_check) in encoders.items()
        }
        with httpx.Client(timeout=120) as client:
            probe = client.post(
                f"{urls['through the proxy']}/predict_arrow",
                content=variants["/predict_arrow"][1][0][0],
                headers={"content-type": ARROW_STREAM},
            )
        arrow_note = ""
        if probe.status_code == 404:
            arrow_note = "(b) batch /predict_arrow: not available (the service answered 404), skipped"
            del variants["/predict_arrow"]
        else:
            try:
                check_arrow(ids)(probe.status_code, probe.content)
            except (ValueError, KeyError, OSError) as err:  # pyarrow's errors are ValueError/OSError
                arrow_note = (
                    f"(b) batch /predict_arrow: the service answered {probe.status_code} but the answer "
                    f"did not check ({err}; {probe.content[:200]!r}), skipped"
                )
                del variants["/predict_arrow"]
        batches: dict[tuple[str, str, int], dict[str, Any]] = {}
        for path, (content_type, bodies) in variants.items():
            for name, url in urls.items():
                for clients in client_counts:
                    pids = slot_pids()
                    cpu_before, workers_before = _cpu_seconds(pids), worker_cpu(pids)
                    run = batch_run(f"{url}{path}", bodies[:clients], content_type, n, args.batch_requests)
                    slot_cpu[(path, name, clients)] = (_cpu_seconds(pids) - cpu_before) / run["sent"]
                    run["workers"] = worker_shares(workers_before, worker_cpu(pids))
                    batches[(path, name, clients)] = run
        print(f"load average after the batch runs: {_load()}")
        differences: dict[str, str] = {}
        with httpx.Client(timeout=120) as client:
            for path, (content_type, bodies) in variants.items():
                body, check = bodies[0]
                try:
                    answer = client.post(
                        f"{urls['through the proxy']}{path}",
                        content=body,
                        headers={"content-type": content_type},
                    )
                    served_p = check(answer.status_code, answer.content)[1]
                    difference = max(
                        abs(a - b) for a, b in zip(served_p, inproc["batch_full_probabilities"], strict=True)
                    )
                    differences[path] = f"max |difference| {difference:.2g}"
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
                    differences[path] = f"no valid answer ({type(err).__name__}: {err})"
        server = server_latencies(world.log_folder)

        # --- the figures ------------------------------------------------------------------------
        print()
        met: dict[tuple[str, str], tuple[bool, float]] = {}
        for (sender, name), run in loaded.items():
            met[(sender, name)] = report_open_loop(name, sender, run, args.rate, base, server)
            cpu = slot_cpu[(sender, name)]
            print(
                f"    the slot's processes (bentoml serve and its workers) used {_ms(cpu):.2f} ms CPU per "
                f"request: at {args.rate:g} requests/s, {cpu * args.rate:.0%} of a core"
            )
        for name, answers in unloaded.items():
            latencies = [_ms(a.latency) for a in answers if a.status == 200]
            p50, p99 = _pct(latencies, 50), _pct(latencies, 99)
            print(
                f"(a') single-row {name}, one request at a time (no queueing, httpx): p50 {p50:.2f} ms "
                f"({_x(p50, base['p50'])} in-process CatBoost 1 row p50), p99 {p99:.2f} ms "
                f"({_x(p99, base['p99'])} in-process CatBoost 1 row p99); {len(latencies)} requests, "
                f"{1000 / p50:.1f} requests/s one at a time"
            )
        if arrow_note:
            print(arrow_note)
        for (path, name, clients), run in batches.items():
            rps = run["rows_per_s"]
            served_ms = [server[i] for i in run["ids"] if i in server]
            how = "one client" if clients == 1 else f"{clients} concurrent clients"
            print(
                f"(b) batch {path} {name}, {how}: {rps:,.0f} rows/s = {_share(rps, catboost_rps, baseline)} "
                f"({_share(rps, full_rps, 'the in-process full path, row-oriented')}); {n}-row request p50 "
                f"{_ms(_pct(run['latencies'], 50)):.0f} ms, of which the service's validate+features+score "
                f"{_pct(served_ms, 50):.0f} ms; {run['requests']} requests in {run['wall']:.2f} s, "
                f"{run['failures']} failed; CPU per request: the slot's processes "
                f"{_ms(slot_cpu[(path, name, clients)]):.1f} ms, the client (this process) "
                f"{_ms(run['client_cpu']):.1f} ms; the workers' shares of the slot's CPU {run['workers']}"
            )
        for path, difference in differences.items():
            print(
                f"check: served {path} (through the proxy) vs in-process probabilities, {n} rows: "
                f"{difference}"
            )

        # --- where the time goes in one request ------------------------------------------------
        direct = [a for a in unloaded["straight to the slot"] if a.status == 200]
        via_proxy = [a for a in unloaded["through the proxy"] if a.status == 200]
        direct_ms = _pct([_ms(a.latency) for a in direct], 50)
        proxy_ms = _pct([_ms(a.latency) for a in via_proxy], 50)
        service_ms = _pct([server[a.request_id] for a in direct if a.request_id in server], 50)
        med = {k: _ms(statistics.median(v)) for k, v in single.items()}
        version_ms = _ms(statistics.median(version_times))
        in_process_sum = med["validate"] + med["features"] + med["score"]
        http_ms = direct_ms - service_ms - med["answer"]
        total = proxy_ms
        print()
        print(
            f"where the time goes in one single-row request (medians over {args.single_rows} rows; share of "
            f"the {total:.1f} ms through the proxy):"
        )
        breakdown = [
            ("validation: rules compiled from the spec", med["validate"], 0),
            ("features: feature SQL, prepared statement", med["features"], 0),
            ("scoring: CatBoost from a list of values", med["score"], 0),
            ("answer (dict for the JSON response)", med["answer"], 0),
            ("BentoML + HTTP to the slot", http_ms, 0),
            ("HAProxy hop", proxy_ms - direct_ms, 0),
        ]
        for label, value, depth in breakdown:
            indent = "    " * (depth + 1)
            print(f"{indent}{label:<{50 - 4 * depth}} {value:7.2f} ms {value / total:6.1%}")
        print(
            f"    off the request path: the log writer thread spends {_ms(inproc['single_log']):.2f} ms "
            "CPU per request (20 written together)"
        )
        print(
            f"    measured how: the first four in process (each step timed per call); BentoML + HTTP = "
            f"client latency straight to the slot {direct_ms:.2f} ms - the service's own latency_ms "
            f"{service_ms:.2f} ms (from its prediction log; in process the same steps sum to "
            f"{in_process_sum:.2f} ms) - the answer; "
            f"a no-work /version round trip takes {version_ms:.2f} ms; HAProxy hop = through the proxy "
            f"{proxy_ms:.2f} ms - straight {direct_ms:.2f} ms (requests alternate between the two routes)"
        )
        print()
        proxy, straight = "through the proxy", "straight to the slot"
        for sender in senders:
            print(
                f"target: single-row p99 < {P99_TARGET_MS:g} ms at {args.rate:g} req/s through the proxy "
                f"({sender} sender): {_met(met[(sender, proxy)][0])} (p99 over all requests "
                f"{_p99_text(met[(sender, proxy)][1])}); straight to the slot: "
                f"{_met(met[(sender, straight)][0])} ({_p99_text(met[(sender, straight)][1])}); unloaded "
                f"p50 through the proxy {proxy_ms:.1f} ms"
            )
        for clients in client_counts:
            proxied = {
                path: run for (path, name, c), run in batches.items() if name == proxy and c == clients
            }
            best_path, best = max(proxied.items(), key=lambda item: item[1]["rows_per_s"])
            how = "one client" if clients == 1 else f"{clients} concurrent clients"
            best_rps, needed = best["rows_per_s"], THROUGHPUT_TARGET * catboost_rps
            print(
                f"target: batch throughput >= 1/3 of {baseline}, the faster thread count ({needed:,.0f} "
                f"rows/s), best variant through the proxy, {how} (of {', '.join(proxied)}): "
                f"{_met(best_rps >= needed)}; {best_path} {best_rps:,.0f} rows/s = "
                f"{_share(best_rps, catboost_rps, baseline)}"
            )
        print(f"load average (1/5/15 min) at the end: {_load()}")
    finally:
        if deploy is not None:
            deploy.shutdown()
        if world is not None:
            world.con.close()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
