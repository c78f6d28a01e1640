"""The canary's verdict and score shift, on figures (the watch itself runs against real slots in
test_rollout.py)."""

from __future__ import annotations

from ct_assets.lib.serving.canary_health import HealthPolicy, score_hellinger, verdict

POLICY = HealthPolicy(min_requests=20, max_error_rate=0.01, max_p99_ms=250.0, max_score_shift=0.25)


def _health(**figures: object) -> dict:
    return {"requests": 100, "errors": 0, "error_rate": 0.0, "p99_ms": 40.0, "score_shift": 0.05, **figures}


def test_a_healthy_canary_has_no_reason_against_it() -> None:
    assert verdict(_health(), POLICY) == []


def test_each_breached_threshold_gives_its_reason() -> None:
    reasons = verdict(_health(requests=5, error_rate=0.2, p99_ms=900.0, score_shift=0.6), POLICY)
    assert len(reasons) == 4
    assert reasons[0].startswith("only 5 requests reached the canary")
    assert reasons[1] == "error rate 20.0% > 1.0%"
    assert reasons[2] == "p99 latency 900 ms > 250 ms"
    assert "score distribution moved 0.60" in reasons[3]


def test_no_latency_logged_is_no_latency_breach() -> None:
    assert verdict(_health(p99_ms=None), POLICY) == []


def test_score_hellinger_is_zero_for_the_same_scores_and_one_for_disjoint_ones() -> None:
    scores = [0.05, 0.15, 0.55, 0.95]
    assert score_hellinger(scores, scores) == 0.0
    assert abs(score_hellinger([0.05] * 10, [0.95] * 10) - 1.0) < 1e-12
    assert score_hellinger([], scores) == 0.0
