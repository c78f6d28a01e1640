"""Health judgement of a candidate slot: before any traffic it must reproduce the evaluation's
holdout scores (inference compatibility); then, with a canary share of real traffic, its error
rate (the proxy's counters), p99 latency and score distribution (its prediction log) over the
health window decide whether it may take all traffic."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core import processes
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout


@dataclass(frozen=True)
class HealthPolicy:
    canary_share: float = 0.1
    window_seconds: float = 20.0
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_p99_ms: float = 250.0
    max_score_shift: float = 0.25  # Hellinger distance of canary scores from the holdout's


def score_hellinger(a: list[float], b: list[float], bins: int = 10) -> float:
    """Hellinger distance between two score samples over `bins` equal bins of [0, 1]."""
    import numpy as np

    if not a or not b:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    p, _ = np.histogram(np.clip(a, 0, 1), edges)
    q, _ = np.histogram(np.clip(b, 0, 1), edges)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sqrt(max(0.0, 1 - np.sum(np.sqrt(p * q)))))


def compatibility_problem(port: int, rows: list[dict], expected: list[float]) -> str | None:
    """Why the slot on `port` does not reproduce `expected` for `rows` (None when it does)."""
    import httpx
    import numpy as np

    if not rows:
        return None
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows}, timeout=120)
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


def verdict(health: dict[str, Any], policy: HealthPolicy) -> list[str]:
    """The reasons a canary with these health figures fails `policy` (empty: healthy)."""
    reasons = []
    if health["requests"] < policy.min_requests:
        reasons.append(
            f"only {health['requests']} requests reached the canary in {policy.window_seconds:g} s "
            f"(needs {policy.min_requests})"
        )
    if health["error_rate"] > policy.max_error_rate:
        reasons.append(f"error rate {health['error_rate']:.1%} > {policy.max_error_rate:.1%}")
    if health["p99_ms"] is not None and health["p99_ms"] > policy.max_p99_ms:
        reasons.append(f"p99 latency {health['p99_ms']:.0f} ms > {policy.max_p99_ms:.0f} ms")
    if health["score_shift"] > policy.max_score_shift:
        reasons.append(
            f"score distribution moved {health['score_shift']:.2f} (Hellinger) from the holdout's "
            f"> {policy.max_score_shift:.2f}"
        )
    return reasons


class CanaryJudge:
    """Watches one slot through the proxy's counters and the slot's prediction log."""

    def __init__(self, layout: ProxyLayout, log_folder: Path) -> None:
        self.layout = layout
        self.log_folder = Path(log_folder)

    def watch(
        self, slot: str, pid: int | None, reference: list[float], policy: HealthPolicy
    ) -> tuple[dict[str, Any], list[str]]:
        """Health of the canary on real traffic over the window, and the reasons it fails."""
        import numpy as np

        before = proxy.server_stats(self.layout).get(slot, {})
        started = datetime.now(UTC).isoformat()
        down = self.wait_window(slot, pid, policy.window_seconds)
        after = proxy.server_stats(self.layout).get(slot, {})

        def delta(name: str) -> int:
            return int(after.get(name) or 0) - int(before.get(name) or 0)

        requests = delta("stot")
        errors = delta("hrsp_5xx") + delta("econ") + delta("eresp")
        logged = self.logged_since(slot, started)
        latencies = [r["latency_ms"] for r in logged if r.get("latency_ms") is not None]  # per request
        scores = [score for r in logged for score in r["score"]]
        health = {
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
            "score_shift": score_hellinger(scores, reference),
        }
        if down:  # the window ended early: nothing else about the canary matters
            health.update(down)
            return health, [down["reason"]]
        return health, verdict(health, policy)

    def wait_window(self, slot: str, pid: int | None, seconds: float) -> dict[str, Any] | None:
        """Sleep through the health window, ending it early when the slot dies: HAProxy marks it
        DOWN (health check, or refused connections on live traffic) or its server process exits."""
        began = time.monotonic()
        while time.monotonic() - began < seconds:
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
                return {"slot_down": True, "detected_at": time.time(), "reason": reason}
            time.sleep(0.1)
        return None

    def logged_since(self, slot: str, since: str) -> list[dict[str, Any]]:
        """The slot's logged requests since `since` (each with its predictions' scores)."""
        from ct_assets.lib.serving.prediction_log import log_files, read_requests

        files = log_files(self.log_folder, slot)
        return [request for path in files for request in read_requests(path, since=since)]
