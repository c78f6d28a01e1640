"""The canary's comparison with the active slot on the same window, on logged requests as the
prediction log returns them: an identical model shows no shift, a shifted one does."""

from __future__ import annotations

import random

from ct_assets.lib.serving.canary_compare import (
    MIN_PAIRS,
    binomial_tail,
    compare_scores,
    paired_scores,
    too_few_scores,
)


def _requests(scores: list[float], ids: list[int]) -> list[dict]:
    return [
        {"entity_id": [str(i)], "score": [s], "features": {"x": [i * 0.5], "c": ["a"]}}
        for s, i in zip(scores, ids, strict=True)
    ]


def _model(entity: int, shift: float = 0.0) -> float:
    return min(1.0, max(0.0, (entity % 97) / 97 + shift))


def test_an_identical_model_on_the_same_inputs_shows_no_shift() -> None:
    ids_active, ids_canary = list(range(300)), list(range(0, 300, 7))
    active = _requests([_model(i) for i in ids_active], ids_active)
    canary = _requests([_model(i) for i in ids_canary], ids_canary)
    assert len(paired_scores(canary, active)) == len(ids_canary) >= MIN_PAIRS
    found = compare_scores(canary, active, [])
    assert found.basis == "same inputs" and found.shift == 0.0
    shifted = compare_scores(_requests([_model(i, 0.3) for i in ids_canary], ids_canary), active, [])
    assert shifted.shift > 0.3 and shifted.max_difference > 0.29


def test_without_shared_inputs_only_the_shift_beyond_sampling_noise_counts() -> None:
    generator = random.Random(1)
    for _ in range(20):  # small disjoint samples of one model: never a shift
        active_ids = [generator.randrange(10_000) for _ in range(180)]
        canary_ids = [10_000 + generator.randrange(10_000) for _ in range(20)]
        found = compare_scores(
            _requests([_model(i) for i in canary_ids], canary_ids),
            _requests([_model(i) for i in active_ids], active_ids),
            [],
        )
        assert found.basis == "same window" and found.shift < 0.1, found
    canary_ids = [10_000 + generator.randrange(10_000) for _ in range(100)]
    shifted = _requests([_model(i, 0.5) for i in canary_ids], canary_ids)
    assert compare_scores(shifted, _requests([_model(i) for i in active_ids], active_ids), []).shift > 0.3


def test_a_shift_twice_the_allowed_one_cannot_hide_in_the_noise_of_a_judgeable_window() -> None:
    generator = random.Random(2)
    active_ids = [generator.randrange(10_000) for _ in range(900)]
    active = _requests([_model(i) for i in active_ids], active_ids)
    verdicts = {}
    for size in (6, 20, 100, 300):
        canary_ids = [10_000 + generator.randrange(10_000) for _ in range(size)]
        shifted = compare_scores(_requests([_model(i, 0.5) for i in canary_ids], canary_ids), active, [])
        problem = too_few_scores(shifted, 0.25)
        verdicts[size] = problem
        assert problem is not None or shifted.shift > 0.25, (size, shifted)
    assert verdicts[6] and "6 scores" in verdicts[6] and verdicts[300] is None, verdicts
    paired = compare_scores(active[:MIN_PAIRS], active, [])
    assert paired.basis == "same inputs" and too_few_scores(paired, 0.25) is None


def test_the_holdout_is_the_basis_only_when_the_active_slot_logged_nothing() -> None:
    found = compare_scores(_requests([0.2] * 30, list(range(30))), [], [0.2] * 100)
    assert found.basis == "holdout" and found.shift == 0.0


def test_binomial_tail() -> None:
    assert binomial_tail(0, 10, 0.0) == 1.0 and binomial_tail(1, 10, 0.0) == 0.0
    assert abs(binomial_tail(1, 10, 0.1) - (1 - 0.9**10)) < 1e-12
    assert binomial_tail(50, 1000, 0.01) < 1e-6
