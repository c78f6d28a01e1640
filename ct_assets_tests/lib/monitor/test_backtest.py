"""The retraining-policy backtest on five real days: features built once, each policy's serving
model scored on the next day, and retrains counted as the policy asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.monitor import backtest
from ct_assets_tests.conftest import FIRST_DAYS
from ct_assets_tests.lib.conftest import DAYS


def test_build_features_skips_the_days_already_built(small_spec, flights_landing, tmp_path) -> None:
    con = open_connection(tmp_path / "warehouse.duckdb")
    try:
        seen: list[str] = []
        backtest.build_features(con, small_spec, flights_landing, FIRST_DAYS[:2], seen.append)
        rows = con.execute("SELECT count(*) FROM flights_delay.features").fetchone()[0]
        ingested = con.execute("SELECT max(ingested_at) FROM flights_delay.raw_tags").fetchone()[0]
        backtest.build_features(con, small_spec, flights_landing, FIRST_DAYS, seen.append)
        assert seen == [*FIRST_DAYS[:2], *FIRST_DAYS]
        frames = backtest.load_frames(con, small_spec, FIRST_DAYS)
        assert sorted(frames) == FIRST_DAYS
        assert sum(len(f) for f in frames.values()) > rows > 0
        again = con.execute(
            "SELECT count(*) FROM flights_delay.raw_tags WHERE ingested_at <= ?", [ingested]
        ).fetchone()[0]
        assert again == 2  # the first two days were not ingested again
    finally:
        con.close()


@pytest.mark.parametrize(("policy", "retrains"), [("static", 0), ("periodic", 1), ("scheduled", 1)])
def test_each_policy_scores_every_later_day(small_spec, five_days, policy, retrains) -> None:
    days: list[tuple[str, str]] = []
    run = backtest.Backtest(small_spec, five_days).run(policy, DAYS[2], lambda p, d: days.append((p, d)))
    assert [d["partition"] for d in run.scored] == DAYS[3:] and days == [(policy, d) for d in DAYS[3:]]
    assert run.retrains == retrains and 0 <= run.refused <= retrains
    assert all(0.5 < d["auc"] <= 1 and 0 <= d["ece"] < 1 for d in run.scored)
    assert run.scored[0]["model_trained_on"] == DAYS[2]
    summary = run.summary()
    assert summary["partitions"] == 2 and summary["retrains"] == retrains and summary["cpu_s"] > 0
    assert summary["mean_auc"] == pytest.approx(sum(d["auc"] for d in run.scored) / 2, abs=1e-4)
    assert summary["mean_ece"] == pytest.approx(sum(d["ece"] for d in run.scored) / 2, abs=1e-4)


def test_no_policy_retrains_after_the_last_scored_partition(small_spec, five_days) -> None:
    """A model trained after the last partition would serve nothing: it is neither trained nor
    counted, even when the schedule is due on that partition (a Saturday here)."""
    saturdays = small_spec.model_copy(
        update={"training": small_spec.training.model_copy(update={"retrain_cron": "0 6 * * 6"})}
    )
    test = backtest.Backtest(saturdays, five_days)
    scheduled = test.run("scheduled", DAYS[2])
    assert [d["partition"] for d in scheduled.scored] == DAYS[3:] and DAYS[4] == "2013-01-05"
    assert scheduled.retrains == 0 and scheduled.summary()["retrains"] == 0
    periodic = test.run("periodic", DAYS[2])
    assert periodic.retrains == len(periodic.scored) - 1 == 1


def test_a_refused_candidate_leaves_the_previous_model_serving(small_spec, five_days) -> None:
    """Periodic retrains are judged by the gate against the serving model on the candidate's
    holdout: whatever serves the last day was trained on a day whose candidate passed."""
    test = backtest.Backtest(small_spec, five_days)
    run = test.run("periodic", DAYS[2])
    served = {d["model_trained_on"] for d in run.scored}
    assert served <= {DAYS[2], DAYS[3]} and run.retrains == 1 and run.refused <= 1


def test_triggered_policy_records_its_reasons(small_spec, five_days) -> None:
    run = backtest.Backtest(small_spec, five_days).run("triggered", DAYS[2])
    assert len(run.scored) == 2 and len(run.reasons) == run.retrains
    assert backtest.report(small_spec, [run])["policies"]["triggered"]["retrains"] == run.retrains


def test_the_warm_up_runs_before_any_policys_clock_starts(small_spec, five_days) -> None:
    """The process's one-time costs (imports, CatBoost's first fit) fall in the warm-up, which runs
    the timed code paths once before any policy reads the clock; the clock here counts readings."""
    readings: list[bool] = []  # at each reading of the clock: had the warm-up finished?

    def clock() -> float:
        readings.append(test.warm_up_run is not None)
        return float(len(readings))

    test = backtest.Backtest(small_spec, five_days, clock=clock)
    static = test.run("static", DAYS[2])
    warm_up = test.warm_up_run
    assert warm_up is not None
    before = readings.count(False)
    assert before > 0 and readings == [False] * before + [True] * (len(readings) - before)
    # the warm-up scored a partition and judged a candidate against the model serving it
    assert len(warm_up.scored) == 2 and warm_up.retrains == 1
    assert static.cpu_seconds == (len(readings) - before) / 2  # one unit per timed step: its own only
    so_far = len(readings)
    periodic = test.run("periodic", DAYS[2])
    assert test.warm_up_run is warm_up and readings.count(False) == before  # once per backtest
    assert periodic.cpu_seconds == (len(readings) - so_far) / 2


def test_plot_draws_every_policy(small_spec, five_days, tmp_path: Path) -> None:
    test = backtest.Backtest(small_spec, five_days)
    assert test.window(DAYS[-1]) == DAYS[-3:]
    runs = [test.run("static", DAYS[2]), test.run("periodic", DAYS[2])]
    path = backtest.plot(runs, tmp_path / "policies.png")
    assert path.read_bytes().startswith(b"\x89PNG")
