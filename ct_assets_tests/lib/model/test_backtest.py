"""The retraining-policy backtest on five real days: features built once, each policy's serving
model scored on the next day, and retrains counted as the policy asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.model import backtest
from ct_assets_tests.conftest import FIRST_DAYS
from ct_assets_tests.lib.model.conftest import DAYS


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


@pytest.mark.parametrize(("policy", "retrains"), [("static", 1), ("periodic", 3), ("periodic_weekly", 2)])
def test_each_policy_scores_every_later_day(small_spec, five_days, policy, retrains) -> None:
    days: list[tuple[str, str]] = []
    run = backtest.Backtest(small_spec, five_days).run(policy, DAYS[2], lambda p, d: days.append((p, d)))
    assert [d["partition"] for d in run.daily] == DAYS[3:] and days == [(policy, d) for d in DAYS[3:]]
    assert run.retrains == retrains
    assert all(0.5 < d["auc"] <= 1 for d in run.daily)
    assert run.daily[0]["model_trained_on"] == DAYS[2]
    summary = run.summary()
    assert summary["days"] == 2 and summary["retrains"] == retrains
    assert summary["mean_daily_auc"] == pytest.approx(sum(d["auc"] for d in run.daily) / 2)


def test_plot_draws_every_policy(small_spec, five_days, tmp_path: Path) -> None:
    test = backtest.Backtest(small_spec, five_days)
    assert test.window(DAYS[-1]) == DAYS[-3:]
    runs = [test.run("static", DAYS[2]), test.run("periodic", DAYS[2])]
    path = backtest.plot(runs, tmp_path / "policies.png")
    assert path.read_bytes().startswith(b"\x89PNG")
