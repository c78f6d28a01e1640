"""Serving benchmark report helpers: percentiles, ratios to the in-process baselines, targets, and
the open-loop figures of one route."""

from __future__ import annotations

import os
from typing import Any

from serving_anchors import BARE, HELLO
from serving_clients import Answer

P99_TARGET_MS = 10.0
THROUGHPUT_TARGET = 1 / 3
# Single rows through the proxy, against the anchors (`serving_anchors`) measured in the same run.
CPU_HELLO_TARGET, CPU_HELLO_MOONSHOT = 1.5, 1.1  # slot CPU per request / the hello service's
P99_HELLO_TARGET = 1.5  # slot p99 / the hello service's p99
P99_BARE_MOONSHOT = 1.5  # slot p99 / the bare ASGI app's p99


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def to_ms(seconds: float) -> float:
    return seconds * 1000


def times_text(value: float, base: float) -> str:
    return f"{value / base:,.0f}x" if value / base >= 10 else f"{value / base:.1f}x"


def share(value: float, base: float, what: str = "in-process CatBoost") -> str:
    ratio = value / base if base else float("nan")
    tail = f" = 1/{1 / ratio:,.0f}" if 0 < ratio < 0.1 else ""
    return f"{ratio:.1%} of {what}{tail}"


def p99_text(value: float) -> str:
    return f"{value:.1f} ms" if value != float("inf") else "unbounded (over 1% failed)"


def met_text(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def p99_over_all(answers: list[Answer]) -> float:
    """p99 latency in ms over all requests, a failed one counting as infinitely slow."""
    failed = sum(a.status != 200 for a in answers)
    every = sorted([*(to_ms(a.latency) for a in answers if a.status == 200), *[float("inf")] * failed])
    return every[min(len(every) - 1, int(0.99 * len(every)))]


def ratio_text(value: float, base: float, target: float, what: str) -> str:
    """The ratio and whether it meets `target`, as "2.41x (target <= 1.5x: NOT MET)"."""
    ratio = value / base if base else float("inf")
    return f"{ratio:.2f}x ({what} <= {target:g}x: {met_text(ratio <= target)})"


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
    latencies = [to_ms(a.latency) for a in ok]
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    p99_all = p99_over_all(answers)
    lag = [to_ms(a.lag) for a in answers]
    served = [server[a.request_id] for a in ok if a.request_id in server]
    statuses: dict[str, int] = {}
    for a in answers:
        if a.status != 200:
            statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
    print(
        f"(a) single-row {name}, {sender} sender, {len(answers)} requests scheduled at {rate:g}/s (open "
        f"loop): {len(ok)} answered, {failed} failed{f' {statuses}' if statuses else ''}; answered ones "
        f"p50 {p50:.1f} ms ({times_text(p50, base['p50'])} in-process CatBoost 1 row p50), "
        f"p99 {p99:.1f} ms ({times_text(p99, base['p99'])} in-process CatBoost 1 row p99), "
        f"max {max(latencies, default=float('nan')):.0f} ms; p99 over all "
        f"requests {p99_text(p99_all)}; answers {len(ok) / wall:.1f}/s"
    )
    waited = [to_ms(a.waited) for a in answers]
    pool = (
        f"; waited for a free connection: {sum(w > 0.1 for w in waited)} requests over 0.1 ms, p99 "
        f"{pct(waited, 99):.1f} ms (counted in the latency)"
        if sender == "light"
        else ""
    )
    print(
        f"    the sender (this process) used {to_ms(sender_cpu):.2f} ms CPU per request = "
        f"{sender_cpu * rate:.0%} of a core at {rate:g} requests/s; its event loop woke late by p99 "
        f"{pct(lag, 99):.1f} ms{pool}"
    )
    if served:
        print(
            f"    of which the service's own time (validate+features+score, latency_ms): p50 "
            f"{pct(served, 50):.1f} ms, p99 {pct(served, 99):.1f} ms; the rest is waiting in BentoML's "
            f"queue, HTTP{' and HAProxy' if 'proxy' in name else ''}"
        )
    return p99_all < P99_TARGET_MS, p99_all  # the printed figure; infinite if over 1% failed


def report_anchors(
    senders: list[str],
    routes: tuple[str, str],
    slot_runs: dict[tuple[str, str], tuple[list[Answer], float, float]],
    slot_cpu: dict[Any, float],
    anchor_runs: dict[tuple[str, str, str], tuple[list[Answer], float, float]],
    anchor_cpu: dict[tuple[str, str, str], float],
) -> None:
    """Print the anchors' single-row figures, and the slot's against them with the targets;
    `routes` is (through the proxy, straight), and the targets are read through the proxy."""
    print()
    for (anchor, sender, route), (answers, _, _) in anchor_runs.items():
        ok = [to_ms(a.latency) for a in answers if a.status == 200]
        where = route.replace("the slot", "the server")
        print(
            f"(a) anchor {anchor}, single-row {where}, {sender} sender, same rate and duration: "
            f"{len(ok)} answered, {len(answers) - len(ok)} failed; p50 {pct(ok, 50):.1f} ms, p99 over all "
            f"requests {p99_text(p99_over_all(answers))}; the server's processes used "
            f"{to_ms(anchor_cpu[(anchor, sender, route)]):.2f} ms CPU per request"
        )
    for sender in senders:
        for route in routes:
            slot_p99 = p99_over_all(slot_runs[(sender, route)][0])
            hello_p99 = p99_over_all(anchor_runs[(HELLO, sender, route)][0])
            bare_p99 = p99_over_all(anchor_runs[(BARE, sender, route)][0])
            cpu, hello_cpu = slot_cpu[(sender, route)], anchor_cpu[(HELLO, sender, route)]
            bare_cpu = anchor_cpu[(BARE, sender, route)]
            what = "target" if route == routes[0] else "as the target"
            print(
                f"anchors, single row {route} ({sender} sender): slot CPU per request / hello's "
                f"{ratio_text(cpu, hello_cpu, CPU_HELLO_TARGET, what)}, moonshot "
                f"<= {CPU_HELLO_MOONSHOT:g}x: {met_text(cpu / hello_cpu <= CPU_HELLO_MOONSHOT)}; "
                f"/ bare ASGI's {cpu / bare_cpu:.1f}x; slot p99 / hello p99 "
                f"{ratio_text(slot_p99, hello_p99, P99_HELLO_TARGET, what)}; slot p99 / bare ASGI p99 "
                f"{ratio_text(slot_p99, bare_p99, P99_BARE_MOONSHOT, 'moonshot')}"
            )
