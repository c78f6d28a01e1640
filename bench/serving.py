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
    line and Content-Length parsed; `--sender httpx`: httpx's async client (its CPU per request is
    taken from the server under test on a small machine); `--sender both`. The sender's own CPU
    per request (this process's CPU during the run / requests) is printed beside the figures.
    The same runs (sender, rate, duration, bodies, both routes) go to two anchors with no model
    behind them (`serving_anchors`): a bare ASGI app under uvicorn and a BentoML hello service,
    each with the slot's worker count behind its own HAProxy with the slot's configuration; the
    server's CPU per request is taken for them as for the slot;
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
BentoML + HTTP, and the HAProxy hop; the rows' shares of the latency through the proxy add to
100 %. `--workers N` sets the slot's and the anchors' worker processes (CT_SERVICE_WORKERS; default
the service's, one per core).
Targets: single-row p99 under 10 ms at 100 requests/s through the proxy; through the proxy, the
slot's CPU per single-row request at most 1.5x the hello service's (moonshot 1.1x) and its p99 at
most 1.5x the hello service's (moonshot: 1.5x the bare ASGI app's); batch throughput (the best
variant through the proxy, for one client and for N clients) at least a third of in-process
CatBoost (the faster thread count). The load average is printed because other work on the
machine skews timings.

Run: `uv run python bench/serving.py` (minutes; `--sender both` takes longer). The parts live in
`serving_setup` (the world), `serving_inprocess` (c), `serving_clients` (the HTTP senders),
`serving_anchors` (the anchors; their servers in `anchor_asgi` and `anchor_hello`) and
`serving_report` (ratios and targets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving_anchors import running_anchors
from serving_clients import (
    Answer,
    batch_run,
    check_arrow,
    check_json,
    client_rows,
    cpu_seconds,
    open_loop,
    sequential,
    server_latencies,
    worker_cpu,
    worker_shares,
)
from serving_inprocess import in_process
from serving_report import (
    P99_TARGET_MS,
    THROUGHPUT_TARGET,
    load_average,
    met_text,
    p99_text,
    pct,
    report_anchors,
    report_open_loop,
    share,
    times_text,
    to_ms,
)
from serving_setup import DAYS, World, build_world, free_ports, request_rows

if TYPE_CHECKING:
    from ct_assets.lib.core.spec import PipelineSpec
    from ct_assets.lib.serving.rollout import Deployment

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PROXY, STRAIGHT = "through the proxy", "straight to the slot"
Check = Callable[[int, bytes], tuple[str, list[float]]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    counts = (args.batch_rows, args.batch_requests, args.single_rows, *args.batch_clients, args.connections)
    if args.rate <= 0 or args.duration <= 0 or min(counts) < 1:
        parser.error(
            "--rate, --duration, --batch-rows, --batch-requests, --batch-clients, --connections and "
            "--single-rows must be positive"
        )
    return args


def deploy_champion(
    world: World, rows: list[dict], root: Path, workers: int
) -> tuple[Deployment, dict[str, str]]:
    """The first deployment of the world's bento (HAProxy and the blue slot on ports from the OS);
    returns it and the two routes' base URLs."""
    import httpx

    from ct_assets.lib.serving import steps as deploy_steps
    from ct_assets.lib.serving.proxy import ProxyLayout
    from ct_assets.lib.serving.rollout import Deployment, HealthPolicy

    compat = rows[:100]
    expected = deploy_steps.reference_scores(
        world.con, world.spec, world.record, world.registry, compat, DAYS
    )
    stable, blue, green, blue_check, green_check = free_ports(5)
    layout = ProxyLayout(
        root / "proxy", stable, {"blue": blue, "green": green}, {"blue": blue_check, "green": green_check}
    )
    env = {
        "CT_ONLINE_SNAPSHOT": str(world.snapshot),
        "CT_PREDICTION_LOG": str(world.log_folder),
        "CT_SERVICE_WORKERS": str(workers),
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
    return deploy, {PROXY: f"http://127.0.0.1:{stable}", STRAIGHT: f"http://127.0.0.1:{blue}"}


@dataclass(frozen=True)
class Baselines:
    """What the HTTP figures are compared with, from the in-process run."""

    rows: int
    single: dict[str, list[float]]  # per step, seconds per single-row call
    p50: float  # in-process CatBoost, 1 row, ms
    p99: float
    catboost_rps: float  # the faster thread count's rows/s
    label: str
    full_rps: float  # the in-process full path, row-oriented
    probabilities: list[float]
    single_log: float


def report_in_process(inproc: dict[str, Any]) -> Baselines:
    """Print (c) and return the baselines."""
    single = inproc["single"]
    n = inproc["batch_rows"]
    ms = {k: to_ms(v) for k, v in inproc.items() if isinstance(v, float)}
    # The baseline for throughput ratios: the faster of CatBoost at 1 thread and at all cores.
    threads = min((1, -1), key=lambda t: inproc[f"batch_predict_t{t}"])
    base = Baselines(
        rows=n,
        single=single,
        p50=to_ms(pct(single["catboost"], 50)),
        p99=to_ms(pct(single["catboost"], 99)),
        catboost_rps=n / inproc[f"batch_predict_t{threads}"],
        label=f"in-process CatBoost (thread_count={threads})",
        full_rps=n / inproc["batch_full"],
        probabilities=inproc["batch_full_probabilities"],
        single_log=inproc["single_log"],
    )
    full_columns_rps = n / inproc["batch_full_columns"]
    full_p50, full_p99 = to_ms(pct(single["full"], 50)), to_ms(pct(single["full"], 99))
    print()
    for t, label in ((1, "thread_count=1"), (-1, f"thread_count=-1, all {os.cpu_count()} cores")):
        print(
            f"(c) in-process CatBoost predict_proba, {n} rows (prepared inputs), {label}: "
            f"{n / inproc[f'batch_predict_t{t}']:,.0f} rows/s ({ms[f'batch_predict_t{t}']:.2f} ms per "
            f"call, {ms[f'batch_predict_t{t}_cpu']:.2f} ms process CPU)"
            + (" = the FASTER one, the baseline for throughput ratios" if t == threads else "")
        )
    print(
        f"(c) in-process CatBoost predict_proba, 1 row: p50 {base.p50:.3f} ms, p99 "
        f"{base.p99:.3f} ms ({len(single['catboost'])} rows) = the baseline for latency ratios"
    )
    print(
        f"(c) in-process full path (serving.Predictor, what a worker runs per request), {n} rows: "
        f"row-oriented {base.full_rps:,.0f} rows/s = {share(base.full_rps, base.catboost_rps, base.label)} "
        f"({ms['batch_full']:.1f} ms, {ms['batch_full_cpu']:.1f} ms CPU), column-oriented "
        f"{full_columns_rps:,.0f} rows/s = {share(full_columns_rps, base.catboost_rps, base.label)}; steps: "
        f"validate rows {ms['batch_validate']:.1f} / columns {ms['batch_validate_columns']:.1f} ms, "
        f"features {ms['batch_features']:.1f} ms (of which the Arrow table {ms['batch_arrow']:.1f}), "
        f"score {ms['batch_score']:.1f} ms; off the request path the log writer spends "
        f"{ms['batch_log']:.2f} ms CPU on its rows (20 requests written together; "
        f"{ms['batch_log_alone']:.2f} ms for one alone); "
        f"probabilities identical to model_training.score: "
        f"{inproc['batch_identical']}"
    )
    print(
        f"(c) in-process full path, 1 row: p50 {full_p50:.2f} ms ({times_text(full_p50, base.p50)} "
        f"in-process CatBoost 1 row p50), p99 {full_p99:.2f} ms ({times_text(full_p99, base.p99)} "
        f"in-process CatBoost 1 row p99); {1000 / full_p50:,.0f} rows/s one at a time"
    )
    return base


def version_round_trips(url: str, count: int) -> list[float]:
    """Seconds of `count` no-work /version round trips (after 10 warm-up ones)."""
    import httpx

    seconds = []
    with httpx.Client(timeout=30) as client:
        for index in range(count + 10):
            started = time.perf_counter()
            client.post(f"{url}/version", json={})
            if index >= 10:
                seconds.append(time.perf_counter() - started)
    return seconds


def open_loop_runs(
    urls: dict[str, str],
    bodies: list[bytes],
    args: argparse.Namespace,
    senders: list[str],
    slot_pids: Callable[[], list[int]],
    slot_cpu: dict[Any, float],
    label: str = "",
) -> dict[tuple[str, str], tuple[list[Answer], float, float]]:
    """(a): single rows at a fixed rate, per sender and route; the CPU per request of the server whose
    root processes `slot_pids` gives (the slot's, or with `label` an anchor's) into `slot_cpu`."""
    loaded = {}
    for sender in senders:
        for name, url in urls.items():
            sequential({name: f"{url}/predict"}, bodies, 0, warmup=10)
            cpu_before = cpu_seconds(slot_pids())
            run = open_loop(f"{url}/predict", bodies, args.rate, args.duration, sender, args.connections)
            loaded[(sender, name)] = run
            slot_cpu[(sender, name)] = (cpu_seconds(slot_pids()) - cpu_before) / max(1, len(run[0]))
            print(
                f"load average after {args.duration:g} s at {args.rate:g} req/s {label or 'slot'} {name} "
                f"({sender} sender): {load_average()}"
            )
            time.sleep(2)
    return loaded


def anchor_open_loops(
    args: argparse.Namespace, bodies: list[bytes], senders: list[str], folder: Path
) -> tuple[dict[tuple[str, str, str], tuple[list[Answer], float, float]], dict[tuple[str, str, str], float]]:
    """(a) for the anchors (`serving_anchors`), as for the slot: per (anchor, sender, route), the run
    and the anchor server's CPU per request."""
    runs: dict[tuple[str, str, str], tuple[list[Answer], float, float]] = {}
    cpu: dict[tuple[str, str, str], float] = {}
    with running_anchors(folder, args.workers, (PROXY, STRAIGHT)) as anchors:
        print(f"anchors started ({', '.join(anchors)}), each behind its own HAProxy; {args.workers} workers")
        for name, anchor in anchors.items():
            own_cpu: dict[Any, float] = {}
            for (sender, route), run in open_loop_runs(
                anchor.urls, bodies, args, senders, anchor.pids, own_cpu, name
            ).items():
                runs[(name, sender, route)] = run
                cpu[(name, sender, route)] = own_cpu[(sender, route)]
    return runs, cpu


def batch_variants(
    spec: PipelineSpec, rows: list[dict[str, Any]], url: str, clients: int
) -> tuple[dict[str, tuple[str, list[tuple[bytes, Check]]]], str]:
    """(b)'s request forms, each with one (body, check) per client; /predict_arrow is dropped (with a
    note) when the service answers it 404 or with an answer that does not check."""
    import httpx

    from ct_assets.lib.serving import arrow_request

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
    per_client = [client_rows(rows, spec.entity_id, i) for i in range(clients)]
    client_ids = [[str(row[spec.entity_id]) for row in each] for each in per_client]
    pairs = list(zip(per_client, client_ids, strict=True))
    variants = {
        path: (content_type, [(encode(r), make_check(i)) for r, i in pairs])
        for path, (content_type, encode, make_check) in encoders.items()
    }
    with httpx.Client(timeout=120) as client:
        probe = client.post(
            f"{url}/predict_arrow",
            content=variants["/predict_arrow"][1][0][0],
            headers={"content-type": ARROW_STREAM},
        )
    if probe.status_code == 404:
        del variants["/predict_arrow"]
        return variants, "(b) batch /predict_arrow: not available (the service answered 404), skipped"
    try:
        check_arrow(client_ids[0])(probe.status_code, probe.content)
    except (ValueError, KeyError, OSError) as err:  # pyarrow's errors are ValueError/OSError
        del variants["/predict_arrow"]
        return variants, (
            f"(b) batch /predict_arrow: the service answered {probe.status_code} but the answer "
            f"did not check ({err}; {probe.content[:200]!r}), skipped"
        )
    return variants, ""


def batch_runs(
    variants: dict[str, tuple[str, list[tuple[bytes, Check]]]],
    urls: dict[str, str],
    client_counts: list[int],
    rows: int,
    requests: int,
    slot_pids: Callable[[], list[int]],
    slot_cpu: dict[Any, float],
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(b): every form, route and client count; the slot's CPU per request into `slot_cpu`."""
    batches = {}
    for path, (content_type, bodies) in variants.items():
        for name, url in urls.items():
            for clients in client_counts:
                pids = slot_pids()
                cpu_before, workers_before = cpu_seconds(pids), worker_cpu(pids)
                run = batch_run(f"{url}{path}", bodies[:clients], content_type, rows, requests)
                slot_cpu[(path, name, clients)] = (cpu_seconds(pids) - cpu_before) / run["sent"]
                run["workers"] = worker_shares(workers_before, worker_cpu(pids))
                batches[(path, name, clients)] = run
    return batches


def served_differences(
    variants: dict[str, tuple[str, list[tuple[bytes, Check]]]], url: str, probabilities: list[float]
) -> dict[str, str]:
    """Per form, how far the served probabilities (through the proxy) are from the in-process ones."""
    import httpx

    differences: dict[str, str] = {}
    with httpx.Client(timeout=120) as client:
        for path, (content_type, bodies) in variants.items():
            body, check = bodies[0]
            try:
                answer = client.post(f"{url}{path}", content=body, headers={"content-type": content_type})
                served_p = check(answer.status_code, answer.content)[1]
                difference = max(abs(a - b) for a, b in zip(served_p, probabilities, strict=True))
                differences[path] = f"max |difference| {difference:.2g}"
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
                differences[path] = f"no valid answer ({type(err).__name__}: {err})"
    return differences


def report_http(
    args: argparse.Namespace,
    base: Baselines,
    loaded: dict[tuple[str, str], tuple[list[Answer], float, float]],
    unloaded: dict[str, list[Answer]],
    batches: dict[tuple[str, str, int], dict[str, Any]],
    slot_cpu: dict[Any, float],
    server: dict[str, float],
) -> dict[tuple[str, str], tuple[bool, float]]:
    """Print (a), (a') and (b); return each open-loop run's (target met, p99 over all requests)."""
    print()
    met: dict[tuple[str, str], tuple[bool, float]] = {}
    for (sender, name), run in loaded.items():
        met[(sender, name)] = report_open_loop(
            name, sender, run, args.rate, {"p50": base.p50, "p99": base.p99}, server
        )
        cpu = slot_cpu[(sender, name)]
        print(
            f"    the slot's processes (bentoml serve and its workers) used {to_ms(cpu):.2f} ms CPU per "
            f"request: at {args.rate:g} requests/s, {cpu * args.rate:.0%} of a core"
        )
    for name, answers in unloaded.items():
        latencies = [to_ms(a.latency) for a in answers if a.status == 200]
        p50, p99 = pct(latencies, 50), pct(latencies, 99)
        print(
            f"(a') single-row {name}, one request at a time (no queueing, httpx): p50 {p50:.2f} ms "
            f"({times_text(p50, base.p50)} in-process CatBoost 1 row p50), p99 {p99:.2f} ms "
            f"({times_text(p99, base.p99)} in-process CatBoost 1 row p99); {len(latencies)} requests, "
            f"{1000 / p50:.1f} requests/s one at a time"
        )
    return met


def report_batches(
    base: Baselines,
    batches: dict[tuple[str, str, int], dict[str, Any]],
    slot_cpu: dict[Any, float],
    server: dict[str, float],
    differences: dict[str, str],
    arrow_note: str,
) -> None:
    if arrow_note:
        print(arrow_note)
    n = base.rows
    for (path, name, clients), run in batches.items():
        rps = run["rows_per_s"]
        served_ms = [server[i] for i in run["ids"] if i in server]
        how = "one client" if clients == 1 else f"{clients} concurrent clients"
        print(
            f"(b) batch {path} {name}, {how}: {rps:,.0f} rows/s = "
            f"{share(rps, base.catboost_rps, base.label)} "
            f"({share(rps, base.full_rps, 'the in-process full path, row-oriented')}); {n}-row request p50 "
            f"{to_ms(pct(run['latencies'], 50)):.0f} ms, of which the service's validate+features+score "
            f"{pct(served_ms, 50):.0f} ms; {run['requests']} requests in {run['wall']:.2f} s, "
            f"{run['failures']} failed; CPU per request: the slot's processes "
            f"{to_ms(slot_cpu[(path, name, clients)]):.1f} ms, the client (this process) "
            f"{to_ms(run['client_cpu']):.1f} ms; the workers' shares of the slot's CPU {run['workers']}"
        )
    for path, difference in differences.items():
        print(f"check: served {path} (through the proxy) vs in-process probabilities, {n} rows: {difference}")


def report_breakdown(
    base: Baselines, unloaded: dict[str, list[Answer]], server: dict[str, float], version_times: list[float]
) -> float:
    """Print where the time goes in one single-row request; return the unloaded p50 through the proxy."""
    direct = [a for a in unloaded[STRAIGHT] if a.status == 200]
    via_proxy = [a for a in unloaded[PROXY] if a.status == 200]
    direct_ms = pct([to_ms(a.latency) for a in direct], 50)
    proxy_ms = pct([to_ms(a.latency) for a in via_proxy], 50)
    service_ms = pct([server[a.request_id] for a in direct if a.request_id in server], 50)
    med = {k: to_ms(statistics.median(v)) for k, v in base.single.items()}
    version_ms = to_ms(statistics.median(version_times))
    in_process_sum = med["validate"] + med["features"] + med["score"]
    http_ms = direct_ms - service_ms - med["answer"]
    total = proxy_ms
    print()
    print(
        f"where the time goes in one single-row request (medians over {len(base.single['full'])} rows; "
        f"share of the {total:.1f} ms through the proxy):"
    )
    # The service's own latency is split over its steps in the proportions measured in process, so
    # the rows add up to the total through the proxy.
    steps = {"validate": med["validate"], "features": med["features"], "score": med["score"]}
    scale = service_ms / in_process_sum if in_process_sum else 0.0
    breakdown = [
        ("validation: rules compiled from the spec", steps["validate"] * scale),
        ("features: feature SQL, prepared statement", steps["features"] * scale),
        ("scoring: CatBoost from a list of values", steps["score"] * scale),
        ("answer (dict for the JSON response)", med["answer"]),
        ("BentoML + HTTP to the slot", http_ms),
        ("HAProxy hop", proxy_ms - direct_ms),
    ]
    for label, value in breakdown:
        print(f"    {label:<50} {value:7.2f} ms {value / total:6.1%}")
    summed = sum(value for _, value in breakdown)
    print(f"    {'total (the rows above)':<50} {summed:7.2f} ms {summed / total:6.1%}")
    print(
        f"    off the request path: the log writer thread spends {to_ms(base.single_log):.2f} ms "
        "CPU per request (20 written together)"
    )
    print(
        f"    measured how: the service's own latency_ms (its prediction log) split over validation, "
        f"features and scoring in the proportions timed in process; the answer timed in process; "
        f"BentoML + HTTP = "
        f"client latency straight to the slot {direct_ms:.2f} ms - the service's own latency_ms "
        f"{service_ms:.2f} ms (from its prediction log; in process the same steps sum to "
        f"{in_process_sum:.2f} ms) - the answer; "
        f"a no-work /version round trip takes {version_ms:.2f} ms; HAProxy hop = through the proxy "
        f"{proxy_ms:.2f} ms - straight {direct_ms:.2f} ms (requests alternate between the two routes)"
    )
    return proxy_ms


def report_targets(
    args: argparse.Namespace,
    base: Baselines,
    senders: list[str],
    met: dict[tuple[str, str], tuple[bool, float]],
    batches: dict[tuple[str, str, int], dict[str, Any]],
    client_counts: list[int],
    proxy_ms: float,
) -> None:
    print()
    for sender in senders:
        print(
            f"target: single-row p99 < {P99_TARGET_MS:g} ms at {args.rate:g} req/s through the proxy "
            f"({sender} sender): {met_text(met[(sender, PROXY)][0])} (p99 over all requests "
            f"{p99_text(met[(sender, PROXY)][1])}); straight to the slot: "
            f"{met_text(met[(sender, STRAIGHT)][0])} ({p99_text(met[(sender, STRAIGHT)][1])}); unloaded "
            f"p50 through the proxy {proxy_ms:.1f} ms"
        )
    for clients in client_counts:
        proxied = {path: run for (path, name, c), run in batches.items() if name == PROXY and c == clients}
        best_path, best = max(proxied.items(), key=lambda item: item[1]["rows_per_s"])
        how = "one client" if clients == 1 else f"{clients} concurrent clients"
        best_rps, needed = best["rows_per_s"], THROUGHPUT_TARGET * base.catboost_rps
        print(
            f"target: batch throughput >= 1/3 of {base.label}, the faster thread count ({needed:,.0f} "
            f"rows/s), best variant through the proxy, {how} (of {', '.join(proxied)}): "
            f"{met_text(best_rps >= needed)}; {best_path} {best_rps:,.0f} rows/s = "
            f"{share(best_rps, base.catboost_rps, base.label)}"
        )


def measure(
    args: argparse.Namespace, world: World, deploy: Deployment, urls: dict[str, str], rows: list[dict]
) -> None:
    """(c), then (a) and (b) over HTTP, then the report."""
    from ct_assets.lib.model.model_store import load_model

    model = load_model(world.registry.models, world.record.model_sha256)
    # (c) in process, first, with nothing else running.
    print(f"load average before in-process baselines: {load_average()}")
    base = report_in_process(in_process(world, model, rows, args.single_rows, args.repeat))

    # Unloaded single-row latency: one request at a time (for the breakdown).
    bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
    print(f"\nload average before HTTP runs: {load_average()}")
    unloaded = sequential({name: f"{url}/predict" for name, url in urls.items()}, bodies, args.single_rows)
    version_times = version_round_trips(urls[STRAIGHT], args.single_rows)

    def slot_pids() -> list[int]:
        return [deploy.state().slots["blue"].pid]

    senders = ["light", "httpx"] if args.sender == "both" else [args.sender]
    slot_cpu: dict[Any, float] = {}
    loaded = open_loop_runs(urls, bodies, args, senders, slot_pids, slot_cpu)
    anchor_runs, anchor_cpu = anchor_open_loops(args, bodies, senders, world.root / "anchors")
    client_counts = sorted({1, *args.batch_clients})
    variants, arrow_note = batch_variants(world.spec, rows, urls[PROXY], client_counts[-1])
    batches = batch_runs(variants, urls, client_counts, base.rows, args.batch_requests, slot_pids, slot_cpu)
    print(f"load average after the batch runs: {load_average()}")
    differences = served_differences(variants, urls[PROXY], base.probabilities)
    server = server_latencies(world.log_folder)

    met = report_http(args, base, loaded, unloaded, batches, slot_cpu, server)
    report_batches(base, batches, slot_cpu, server, differences, arrow_note)
    proxy_ms = report_breakdown(base, unloaded, server, version_times)
    report_targets(args, base, senders, met, batches, client_counts, proxy_ms)
    report_anchors(senders, (PROXY, STRAIGHT), loaded, slot_cpu, anchor_runs, anchor_cpu)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="ct-bench-serving-"))
    os.environ["BENTOML_HOME"] = str(root / "bentoml")  # before anything imports bentoml
    os.environ["CT_HOME"] = str(root / "home")
    # A SIGTERM runs the cleanup below too (slot, proxy, temporary folder).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    import catboost
    import duckdb
    import httpx

    print(
        f"serving benchmark: python {platform.python_version()}, catboost {catboost.__version__}, duckdb "
        f"{duckdb.__version__}, httpx {httpx.__version__}, {os.cpu_count()} CPUs; temporary folder {root}"
    )
    print(f"load average (1/5/15 min) at start: {load_average()}")
    deploy: Deployment | None = None
    world: World | None = None
    try:
        world = build_world(root)
        s = world.setup_seconds
        print(
            f"setup: features for {len(DAYS)} days {s['features']:.1f} s, champion {world.record.version} "
            f"trained {s['training']:.1f} s, snapshot + bento {s['bento']:.1f} s ({world.bento})"
        )
        rows = request_rows(world.con, world.spec, DAYS[-2:], args.batch_rows)
        if len(rows) < args.batch_rows:
            raise RuntimeError(f"only {len(rows)} request rows in {DAYS[-2:]}, asked for {args.batch_rows}")
        deploy, urls = deploy_champion(world, rows, root, args.workers)
        measure(args, world, deploy, urls, rows)
        print(f"load average (1/5/15 min) at the end: {load_average()}")
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
