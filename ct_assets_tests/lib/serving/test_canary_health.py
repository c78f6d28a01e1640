"""The canary's verdict and score shift, on figures (the watch itself runs against real slots in
test_rollout.py), and its window on a real HAProxy: extended while too few requests or too few
scores to judge reached the canary, never past its bound."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.canary_health import CanaryJudge, HealthPolicy, score_hellinger, verdict
from ct_assets.lib.serving.canary_records import CanaryHealth, ScoreComparison, SlotWindow
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets_tests.conftest import requires_haproxy
from ct_assets_tests.lib.serving.conftest import wait_all_up

POLICY = HealthPolicy(min_requests=20, max_error_rate=0.01, max_p99_ms=250.0, max_score_shift=0.25)


QUIET = {"requests": 100, "errors": 0, "error_rate": 0.0, "p50_ms": None, "p99_ms": 40.0}


def _health(
    shift: float = 0.05, active: dict | None = None, scored: int = 100, noise: float = 0.1, **canary: object
) -> CanaryHealth:
    """A window's figures: the canary's (and the active slot's) change what they name from QUIET."""
    return CanaryHealth(
        window_seconds=20.0,
        canary=SlotWindow(**{**QUIET, **canary}),
        scores=ScoreComparison(
            basis="same window", scored=scored, pairs=0, hellinger=shift + noise, noise=noise, shift=shift
        ),
        active=SlotWindow(**{**QUIET, **active}) if active is not None else None,
    )


def test_a_healthy_canary_has_no_reason_against_it() -> None:
    assert verdict(_health(), POLICY) == []


def test_each_breached_threshold_gives_its_reason() -> None:
    reasons = verdict(_health(requests=5, errors=3, error_rate=0.6, p99_ms=900.0, shift=0.6), POLICY)
    assert len(reasons) == 4
    assert reasons[0].startswith("only 5 requests reached the canary")
    assert reasons[1] == "error rate 60.0% > 1.0% (the active slot's 0.0% + 1.0%)"
    assert reasons[2] == "p99 latency 900 ms > 250 ms"
    assert "score distribution moved 0.60" in reasons[3]


def test_too_few_scores_to_see_a_shift_fail_the_canary_unless_another_reason_already_does() -> None:
    (reason,) = verdict(_health(shift=0.0, scored=6, noise=0.65), POLICY)
    assert reason == (
        "too few canary scores to judge a score shift: 6 scores, 0 of them on inputs the active slot "
        "also scored (needs 20), sampling noise 0.65 > 0.25"
    )
    assert verdict(_health(shift=0.0, scored=0, noise=0.0), POLICY)[0].startswith("too few canary scores")
    (only,) = verdict(_health(shift=0.0, scored=6, noise=0.65, requests=6), POLICY)
    assert only.startswith("only 6 requests reached the canary")


def test_no_latency_logged_is_no_latency_breach() -> None:
    assert verdict(_health(p99_ms=None), POLICY) == []


def test_score_hellinger_is_zero_for_the_same_scores_and_one_for_disjoint_ones() -> None:
    scores = [0.05, 0.15, 0.55, 0.95]
    assert score_hellinger(scores, scores) == 0.0
    uneven = [0.0, 0.16, 0.32, 0.48, 0.65, 0.81]  # shares of 1/6: 1 - sum(sqrt(pq)) rounds to 1e-16
    assert score_hellinger(uneven, list(uneven)) == 0.0
    assert abs(score_hellinger([0.05] * 10, [0.95] * 10) - 1.0) < 1e-12
    assert score_hellinger([], scores) == 0.0


def test_errors_and_latency_are_judged_against_the_active_slot_on_the_same_window() -> None:
    same = {"error_rate": 0.04, "p50_ms": 300.0}
    assert verdict(_health(errors=5, error_rate=0.05, p50_ms=320.0, p99_ms=400.0, active=same), POLICY) == []
    worse = verdict(
        _health(errors=30, error_rate=0.3, p99_ms=900.0, p50_ms=800.0, active={"p50_ms": 20.0}), POLICY
    )
    assert worse[0].startswith("error rate 30.0% > 1.0%") and worse[1].startswith("p99 latency 900 ms")


def test_one_error_in_a_small_canary_is_chance_at_an_allowed_rate() -> None:
    lenient = HealthPolicy(min_requests=20, max_error_rate=0.05)
    one_error = {"requests": 20, "errors": 1, "error_rate": 0.05, "active": {"errors": 0, "error_rate": 0.0}}
    assert verdict(_health(**one_error), lenient) == []
    strict = HealthPolicy(min_requests=20, max_error_rate=0.0)
    assert verdict(_health(**one_error), strict) != []


def _green_requests(layout: ProxyLayout) -> int:
    return int(proxy.server_stats(layout).get("green", {}).get("stot") or 0)


@pytest.mark.slow
@requires_haproxy
def test_the_window_goes_on_until_enough_requests_and_scores_reached_the_canary_and_no_longer_than_its_bound(
    running: ProxyLayout, tmp_path: Path
) -> None:
    wait_all_up(running)
    proxy.set_weights(running, {"blue": 0, "green": 100})
    judge = CanaryJudge(running, tmp_path / "log")
    slow_traffic = HealthPolicy(window_seconds=0.5, min_requests=6, max_window_seconds=60)
    stop = threading.Event()

    def trickle() -> None:  # one request every 0.3 s: 6 take about 1.8 s, well past the 0.5 s window
        with httpx.Client(base_url=f"http://127.0.0.1:{running.port}", timeout=5) as client:
            while not stop.wait(0.3):
                client.get("/predict")

    before = _green_requests(running)
    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        assert judge.wait_window("green", None, slow_traffic, before) is None
        assert _green_requests(running) - before >= 6, "the window waited for the requests it needs"
    finally:
        stop.set()
        sender.join(timeout=5)
    asked: list[float] = []

    def judgeable_at_the_third_look() -> bool:
        asked.append(time.monotonic())
        return len(asked) >= 3

    few = HealthPolicy(window_seconds=0.2, min_requests=0, max_window_seconds=30)
    assert judge.wait_window("green", None, few, 0, judgeable_at_the_third_look) is None
    assert len(asked) == 3 and asked[-1] - asked[0] >= 2.0, "asked once a second until it could judge"
    quiet = HealthPolicy(window_seconds=0.2, min_requests=6, max_window_seconds=1.0)
    before, began = _green_requests(running), time.monotonic()
    assert judge.wait_window("green", None, quiet, before) is None
    assert time.monotonic() - began >= 1.0 and _green_requests(running) == before, "bounded with no traffic"
