"""The canary against the active slot on the same traffic: error rate, latency and scores of the two
slots over the same health window, with allowances for sampling noise, so that a candidate
identical to the active model always passes and only a real difference fails.

- Scores: where both slots scored the same input in the window (the same entity id with the same
  logged model features), the candidate's scores on those inputs are compared with the active
  slot's (an identical model gives identical scores: no noise to allow for). With fewer such pairs
  the two slots' score distributions over the window are compared, and the Hellinger distance
  two random halves of the pooled scores would show (its 99th percentile over permutations) is
  subtracted: only the excess is a shift. Scores are judged only on enough of them: the pairs, or
  a window whose sampling noise is at most the allowed shift (so that a shift twice the allowed
  one cannot hide in the noise); with fewer the canary fails. The window's requests are not
  re-sent to the active slot (shadow scoring): the log holds the computed features, not the
  request, and a re-sent request would be logged as a second prediction, which live performance
  and lineage would count.
- Errors: the candidate fails when its error rate exceeds the active slot's plus the allowance and
  that many errors would be unlikely (binomial tail under 1 %) at the allowed rate.
- Latency: the candidate fails when its p99 is over the ceiling and its median is also well over
  the active slot's (so a busy machine, which slows both slots alike, is not the candidate's fault).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ct_assets.lib.serving.canary_records import ScoreComparison, SlotWindow

MIN_PAIRS = 20  # same-input pairs needed to judge scores on them alone
PERMUTATIONS = 200
NOISE_QUANTILE = 99.0
ERROR_TAIL = 0.01
LATENCY_RATIO = 2.0  # candidate median over the active slot's median...
LATENCY_SLACK_MS = 5.0  # ...plus this, before a p99 over the ceiling counts against it


def score_hellinger(a: list[float], b: list[float], bins: int = 10) -> float:
    """Hellinger distance between two score samples over `bins` equal bins of [0, 1]."""
    import numpy as np

    if not a or not b:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    p, _ = np.histogram(np.clip(a, 0, 1), edges)
    q, _ = np.histogram(np.clip(b, 0, 1), edges)
    p, q = p / p.sum(), q / q.sum()
    # the squared-difference form is exactly 0 for equal histograms (1 - sum(sqrt(pq)) is not)
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def sampling_noise(a: list[float], b: list[float]) -> float:
    """The Hellinger distance two samples of these sizes drawn from the same scores reach by chance
    (99th percentile over random splits of the pooled scores; a fixed seed, so it is repeatable)."""
    import numpy as np

    if not a or not b:
        return 0.0
    pooled = np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    generator = np.random.default_rng(0)
    distances = []
    for _ in range(PERMUTATIONS):
        shuffled = generator.permutation(pooled)
        distances.append(score_hellinger(list(shuffled[: len(a)]), list(shuffled[len(a) :])))
    return float(np.percentile(distances, NOISE_QUANTILE))


def _inputs(request: dict[str, Any]) -> list[tuple[tuple[str, str], float]]:
    """(entity id, its logged features as text) and the score, per prediction of a logged request."""
    features = request.get("features") or {}
    names = sorted(features)
    keyed = []
    for i, (entity, score) in enumerate(zip(request["entity_id"], request["score"], strict=True)):
        values = json.dumps([features[n][i] for n in names], default=str)
        keyed.append(((str(entity), values), float(score)))
    return keyed


def paired_scores(candidate: list[dict[str, Any]], active: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(candidate score, active score) for each input the candidate scored that the active slot
    also scored in the window."""
    seen: dict[tuple[str, str], float] = {}
    for request in active:
        for key, score in _inputs(request):
            seen.setdefault(key, score)
    return [(score, seen[key]) for request in candidate for key, score in _inputs(request) if key in seen]


def compare_scores(
    candidate: list[dict[str, Any]], active: list[dict[str, Any]], reference: list[float]
) -> ScoreComparison:
    """Score shift of the candidate from the active slot (beyond sampling noise), and its basis:
    `same inputs`, `same window`, or `holdout` (the evaluation's scores, when the active slot logged
    nothing in the window)."""
    pairs = paired_scores(candidate, active)
    if len(pairs) >= MIN_PAIRS:
        mine, theirs = [p[0] for p in pairs], [p[1] for p in pairs]
        distance = score_hellinger(mine, theirs)
        return ScoreComparison(
            basis="same inputs",
            scored=sum(len(r["score"]) for r in candidate),
            pairs=len(pairs),
            hellinger=distance,
            noise=0.0,
            shift=distance,
            max_difference=max(abs(a - b) for a, b in pairs),
        )
    mine = [s for r in candidate for s in r["score"]]
    theirs = [s for r in active for s in r["score"]]
    basis = "same window"
    if not theirs:
        theirs, basis = list(reference), "holdout"
    distance = score_hellinger(mine, theirs)
    noise = sampling_noise(mine, theirs)
    return ScoreComparison(
        basis=basis,
        scored=len(mine),
        pairs=len(pairs),
        hellinger=distance,
        noise=noise,
        shift=max(0.0, distance - noise),
    )


def too_few_scores(scores: ScoreComparison, max_shift: float) -> str | None:
    """Why the window's scores cannot show a shift of `max_shift` (None when they can): fewer than
    MIN_PAIRS same-input pairs and a sampling noise above `max_shift`, or no score at all."""
    if scores.basis == "same inputs":
        return None
    if scores.scored and scores.noise <= max_shift:
        return None
    return (
        f"too few canary scores to judge a score shift: {scores.scored} scores, {scores.pairs} of them "
        f"on inputs the active slot also scored (needs {MIN_PAIRS}), sampling noise {scores.noise:.2f} "
        f"> {max_shift:.2f}"
    )


def binomial_tail(errors: int, requests: int, rate: float) -> float:
    """P(at least `errors` of `requests` fail) when each fails with probability `rate`."""
    if errors <= 0:
        return 1.0
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 1.0

    def pmf(k: int) -> float:
        log = (
            math.lgamma(requests + 1)
            - math.lgamma(k + 1)
            - math.lgamma(requests - k + 1)
            + k * math.log(rate)
            + (requests - k) * math.log1p(-rate)
        )
        return math.exp(log)

    return min(1.0, sum(pmf(k) for k in range(errors, requests + 1)))


def error_problem(canary: SlotWindow, active: SlotWindow | None, allowance: float) -> str | None:
    """Why the candidate's errors count against it (None when they do not)."""
    active_rate = active.error_rate if active else 0.0
    allowed = min(1.0, active_rate + allowance)
    if canary.error_rate <= allowed:
        return None
    if binomial_tail(canary.errors, canary.requests, allowed) >= ERROR_TAIL:
        return None
    return (
        f"error rate {canary.error_rate:.1%} > {allowed:.1%} "
        f"(the active slot's {active_rate:.1%} + {allowance:.1%})"
    )


def latency_problem(canary: SlotWindow, active: SlotWindow | None, ceiling_ms: float) -> str | None:
    """Why the candidate's latency counts against it (None when it does not)."""
    p99, p50 = canary.p99_ms, canary.p50_ms
    active_p50 = active.p50_ms if active else None
    if p99 is None or p99 <= ceiling_ms:
        return None
    if p50 is not None and active_p50 is not None and p50 <= LATENCY_RATIO * active_p50 + LATENCY_SLACK_MS:
        return None  # slow on both slots: the machine, not the candidate
    against = (
        "" if active_p50 is None else f"; median {p50:.0f} ms against the active slot's {active_p50:.0f} ms"
    )
    return f"p99 latency {p99:.0f} ms > {ceiling_ms:.0f} ms{against}"
