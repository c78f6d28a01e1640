"""The figures a canary is judged on, as typed records: each slot's traffic over the health window,
the comparison of the candidate's scores with the active slot's, and the slot's death when the
window ended early. A rollout's result, its audit entries and the deploy asset's metadata carry
`CanaryHealth`; it becomes JSON only when written."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ScoreBasis = Literal["same inputs", "same window", "holdout"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SlotWindow(_Record):
    """One slot's requests and errors (the proxy's counters) and latency (its log) over the window."""

    requests: int
    errors: int
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None


class ScoreComparison(_Record):
    """The candidate's score shift from the active slot's scores (or the holdout's), beyond the
    sampling noise, and what it was measured on: `same inputs` (pairs of one input scored by both
    slots), `same window` (both slots' score distributions) or `holdout`."""

    basis: ScoreBasis
    scored: int  # the candidate's scores in the window
    pairs: int
    hellinger: float
    noise: float
    shift: float
    max_difference: float | None = None  # over the pairs, when the basis is `same inputs`


class SlotDown(_Record):
    """The candidate died during the window: when it was seen (epoch seconds) and how."""

    detected_at: float
    reason: str


class CanaryHealth(_Record):
    """Everything one health window showed about the candidate (and the active slot beside it)."""

    window_seconds: float
    canary: SlotWindow
    scores: ScoreComparison
    active: SlotWindow | None = None  # None when no slot served beside the canary
    down: SlotDown | None = None

    def stored(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the audit log and Dagster metadata."""
        return self.model_dump(mode="json")
