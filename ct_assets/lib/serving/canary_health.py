"""Health judgement of a candidate slot: before any traffic it must reproduce the evaluation's
holdout scores (inference compatibility); then, with a canary share of real traffic, its error
rate (the proxy's counters), latency and scores (the prediction log) over the health window,
compared with the active slot's over the same window (`ct_assets.lib.serving.canary_compare`),
decide whether it may take all traffic."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core import processes
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.canary_compare import (
    compare_scores,
    error_problem,
    latency_problem,
    score_hellinger,
    too_few_scores,
)
from ct_assets.lib.serving.canary_records import CanaryHealth, SlotDown, SlotWindow
from ct_assets.lib.serving.prediction_log import log_files, read_requests
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.request_gate import ROLLOUT_CHECK_HEADER

__all__ = [
    "CanaryHealth",
    "CanaryJudge",
    "HealthPolicy",
    "compatibility_problem",
    "score_hellinger",
    "verdict",
]


@dataclass(frozen=True)
class HealthPolicy:
    canary_share: float = 0.1
    window_seconds: float = 20.0
    min_requests: int = 20
    max_window_seconds: float = 90.0  # the window extends until min_requests, up to this long
    max_error_rate: float = 0.01
    max_p99_ms: float = 250.0
    max_score_shift: float = 0.25  # Hellinger distance of canary scores from the active slot's


def compatibility_problem(
    port: int, rows: list[dict], expected: list[float], instance: str | None = None
) -> str | None:
    """Why the slot on `port` does not reproduce `expected` for `rows` (None when it does). With the
    slot's `instance` id, the request is marked as a rollout check: the slot does not log it as
    served traffic (`request_gate.ROLLOUT_CHECK`)."""
    import httpx  # 0.4 s to load: only a rollout's compatibility check calls a slot
    import numpy as np

    if not rows:
        return None
    headers = {ROLLOUT_CHECK_HEADER: instance} if instance else {}
    try:
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"rows": rows}, headers=headers, timeout=120
        )
    except httpx.HTTPError as err:
        return f"inference compatibility: the new slot did not answer ({err})"
    if answer.status_code != 200:
        return f"inference compatibility: the new slot answered {answer.status_code}: {answer.text[:300]}"
    served = np.array([p["probability"] for p in answer.json()["predictions"]])
    difference = float(np.max(np.abs(served - np.array(expected)))) if len(served) else 0.0
    if len(served) != len(expected) or difference > 1e-9:
        return (
            f"inference compatibility: holdout scores differ from the evaluation's "
            f"(max |difference| {difference:.3g} over {len(served)} rows)"
        )
    return None


def verdict(health: CanaryHealth, policy: HealthPolicy) -> list[str]:
    """The reasons a canary with these health figures (its own, and the active slot's over the same
    window where known) fails `policy` (empty: healthy)."""
    reasons = []
    canary, scores = health.canary, health.scores
    if canary.requests < policy.min_requests:
        reasons.append(
            f"only {canary.requests} requests reached the canary in {health.window_seconds:.0f} s "
            f"(needs {policy.min_requests})"
        )
    problems = [
        error_problem(canary, health.active, policy.max_error_rate),
        latency_problem(canary, health.active, policy.max_p99_ms),
        None if reasons else too_few_scores(scores, policy.max_score_shift),
    ]
    reasons += [p for p in problems if p]
    if scores.shift > policy.max_score_shift:
        against = "the holdout's" if scores.basis == "holdout" else f"the active slot's ({scores.basis})"
        noise = f" beyond sampling noise {scores.noise:.2f}" if scores.noise else ""
        reasons.append(
            f"score distribution moved {scores.shift:.2f} (Hellinger{noise}) from {against} "
            f"> {policy.max_score_shift:.2f}"
        )
    return reasons


class CanaryJudge:
    """Watches one slot through the proxy's counters and the slot's prediction log."""

    def __init__(self, layout: ProxyLayout, log_folder: Path) -> None:
        self.layout = layout
        self.log_folder = Path(log_folder)

    def watch(
        self,
        slot: str,
        pid: int | None,
        reference: list[float],
        policy: HealthPolicy,
        active: str | None = None,
    ) -> tuple[CanaryHealth, list[str]]:
        """Health of the canary on real traffic over the window (see `wait_window`), against the
        `active` slot's on the same window (against the holdout's `reference` scores when the
        active slot logged none), and the reasons it fails."""
        before = proxy.server_stats(self.layout)
        started = datetime.now(UTC).isoformat()
        began = time.monotonic()

        def logged() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            until = datetime.now(UTC).isoformat()
            theirs = self.logged_since(active, started, until) if active else []
            return self.logged_since(slot, started, until), theirs

        def judgeable() -> bool:
            return too_few_scores(compare_scores(*logged(), reference), policy.max_score_shift) is None

        down = self.wait_window(slot, pid, policy, int(before.get(slot, {}).get("stot") or 0), judgeable)
        mine, theirs = logged()
        after = proxy.server_stats(self.layout)
        health = CanaryHealth(
            window_seconds=round(time.monotonic() - began, 1),
            canary=_traffic(before.get(slot, {}), after.get(slot, {}), mine),
            scores=compare_scores(mine, theirs, reference),
            active=_traffic(before.get(active, {}), after.get(active, {}), theirs) if active else None,
            down=down,
        )
        if down:  # the window ended early: nothing else about the canary matters
            return health, [down.reason]
        return health, verdict(health, policy)

    def wait_window(
        self,
        slot: str,
        pid: int | None,
        policy: HealthPolicy,
        requests_before: int = 0,
        judgeable: Callable[[], bool] | None = None,
    ) -> SlotDown | None:
        """Sleep through the health window: `policy.window_seconds`, then on until the slot's request
        count has grown by `policy.min_requests` since `requests_before` and `judgeable()` holds
        (asked at most once a second: it reads the logs), for at most `policy.max_window_seconds` in
        all. End it early when the slot dies: HAProxy marks it DOWN (health check, or refused
        connections on live traffic) or its server process exits."""
        began = time.monotonic()
        asked = -1.0
        longest = max(policy.window_seconds, policy.max_window_seconds)
        while True:
            stats = proxy.server_stats(self.layout).get(slot, {})
            status = stats.get("status", "")
            gone = pid is not None and not processes.is_running(pid)
            if status.startswith("DOWN") or gone:
                check = f"{stats.get('check_status') or '?'} {stats.get('check_desc') or ''}".strip()
                reason = (
                    f"slot {slot} died {time.monotonic() - began:.1f} s into the canary: HAProxy sees it "
                    f"{status or 'unknown'} (last check {check})"
                    + (f", its server process {pid} is gone" if gone else "")
                )
                return SlotDown(detected_at=time.time(), reason=reason)
            elapsed = time.monotonic() - began
            seen = int(stats.get("stot") or 0) - requests_before
            if elapsed >= longest:
                return None
            if elapsed >= policy.window_seconds and seen >= policy.min_requests:
                if judgeable is None:
                    return None
                if elapsed - asked >= 1.0:
                    asked = elapsed
                    if judgeable():
                        return None
            time.sleep(0.1)

    def logged_since(self, slot: str, since: str, until: str | None = None) -> list[dict[str, Any]]:
        """The slot's logged requests from `since` (to `until`), each with its predictions' scores."""
        end = datetime.fromisoformat(until) if until else None
        files = log_files(self.log_folder, slot)
        found = [request for path in files for request in read_requests(path, since=since)]
        return [r for r in found if end is None or datetime.fromisoformat(r["time"]) <= end]


def _traffic(before: dict[str, str], after: dict[str, str], logged: list[dict[str, Any]]) -> SlotWindow:
    """One slot's requests, errors (the proxy's counters) and latency (its log) over the window."""
    import numpy as np

    def delta(name: str) -> int:
        return int(after.get(name) or 0) - int(before.get(name) or 0)

    requests = delta("stot")
    errors = delta("hrsp_5xx") + delta("econ") + delta("eresp")
    latencies = [r["latency_ms"] for r in logged if r.get("latency_ms") is not None]  # per request
    return SlotWindow(
        requests=requests,
        errors=errors,
        error_rate=errors / requests if requests else 0.0,
        p50_ms=float(np.percentile(latencies, 50)) if latencies else None,
        p99_ms=float(np.percentile(latencies, 99)) if latencies else None,
    )
