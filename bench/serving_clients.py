"""Serving benchmark clients over HTTP: the open-loop single-row sender (a light asyncio client or
httpx), sequential requests, concurrent batch clients with answer checks, the service's own
latencies from its prediction log, and the CPU of the slot's processes (psutil)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JSON_HEADERS = {"content-type": "application/json"}


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


def cpu_seconds(pids: list[int]) -> float:
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
