"""The canary's figures as typed records: stored as JSON and read back whole; a wrong or unknown
field is refused."""

from __future__ import annotations

import json

import pytest

from ct_assets.lib.serving.canary_records import CanaryHealth, ScoreComparison, SlotDown, SlotWindow


def _window(requests: int, p99_ms: float | None) -> SlotWindow:
    return SlotWindow(requests=requests, errors=1, error_rate=1 / requests, p50_ms=5.0, p99_ms=p99_ms)


def test_the_figures_are_stored_as_json_and_read_back_whole() -> None:
    health = CanaryHealth(
        window_seconds=21.3,
        canary=_window(40, 12.0),
        scores=ScoreComparison(
            basis="same inputs", scored=40, pairs=31, hellinger=0.0, noise=0.0, shift=0.0, max_difference=0.0
        ),
        active=_window(360, None),
        down=SlotDown(detected_at=1_765_000_000.5, reason="slot green died"),
    )
    stored = json.loads(json.dumps(health.stored()))
    assert stored["canary"]["requests"] == 40 and stored["active"]["p99_ms"] is None
    assert stored["scores"]["basis"] == "same inputs" and stored["down"]["reason"] == "slot green died"
    assert CanaryHealth.model_validate(stored) == health


def test_a_window_without_an_active_slot_or_a_death_stores_them_as_null() -> None:
    health = CanaryHealth(
        window_seconds=3.0,
        canary=_window(3, None),
        scores=ScoreComparison(basis="holdout", scored=3, pairs=0, hellinger=0.2, noise=0.15, shift=0.05),
    )
    assert health.stored()["active"] is None and health.stored()["down"] is None
    assert health.scores.max_difference is None


def test_a_wrong_basis_or_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="basis"):
        ScoreComparison(basis="guess", scored=0, pairs=0, hellinger=0.0, noise=0.0, shift=0.0)
    with pytest.raises(ValueError, match="latency"):
        SlotWindow(requests=1, errors=0, error_rate=0.0, p50_ms=None, p99_ms=None, latency=3)
