"""Fixtures shared by the model and monitor tests: a small flights variant and five days of real features."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import demo_source
from ct_assets.lib.monitor import backtest
from ct_assets_tests.conftest import FIRST_DAYS, write_flights_variant

DAYS = [*FIRST_DAYS, "2013-01-04", "2013-01-05"]


@pytest.fixture(scope="module")
def small_spec(tmp_path_factory: pytest.TempPathFactory) -> PipelineSpec:
    """Flights with a three-day window (one each for train, validation, holdout) and a small model."""
    folder = tmp_path_factory.mktemp("small_spec")
    return load_spec(
        write_flights_variant(
            folder,
            {
                "training.window_partitions": 3,
                "training.validation_partitions": 1,
                "training.holdout_partitions": 1,
                "training.min_rows": 100,
                "training.params.iterations": 30,
                "training.retrain_cron": "0 6 * * 5",  # Fridays: 2013-01-04
            },
        )
    )


@pytest.fixture(scope="module")
def five_days(
    tmp_path_factory: pytest.TempPathFactory, flights_landing: Path, small_spec: PipelineSpec
) -> dict[str, pd.DataFrame]:
    """The features of DAYS built by the data steps, one frame per day (tests only read them)."""
    root = tmp_path_factory.mktemp("five_days")
    landing = root / "landing"
    shutil.copytree(flights_landing / small_spec.name, landing / small_spec.name)
    for day in DAYS[len(FIRST_DAYS) :]:
        demo_source.land_day(landing, small_spec.name, day)
    con = open_connection(root / "warehouse.duckdb")
    try:
        backtest.build_features(con, small_spec, landing, DAYS)
        return backtest.load_frames(con, small_spec, DAYS)
    finally:
        con.close()
