"""retrain_due: a pipeline's retrain cron fires, or not, inside a partition's event-time window."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.core.schedule import retrain_due
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets_tests.conftest import write_flights_variant


def _spec(tmp_path: Path, cron: str | None) -> PipelineSpec:
    return load_spec(write_flights_variant(tmp_path / "variant", {"training.retrain_cron": cron}))


def test_no_cron_is_never_due(tmp_path: Path) -> None:
    assert not retrain_due(_spec(tmp_path, None), "2013-01-07")


@pytest.mark.parametrize(
    ("key", "due"),
    [("2013-01-06", False), ("2013-01-07", True), ("2013-01-08", False)],  # 2013-01-07 is a Monday
)
def test_weekly_cron_fires_on_its_day_only(tmp_path: Path, key: str, due: bool) -> None:
    assert retrain_due(_spec(tmp_path, "0 6 * * 1"), key) is due


def test_cron_at_the_window_start_counts(tmp_path: Path) -> None:
    assert retrain_due(_spec(tmp_path, "0 0 1 * *"), "2013-02-01")
    assert not retrain_due(_spec(tmp_path, "0 0 1 * *"), "2013-02-02")


def test_daily_cron_is_due_every_day(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "30 23 * * *")
    assert all(retrain_due(spec, f"2013-01-{day:02d}") for day in range(1, 8))
