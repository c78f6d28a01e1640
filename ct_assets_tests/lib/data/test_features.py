"""Feature groups on real flights: point-in-time correctness, leakage detection, versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import (
    FeatureDefinitionError,
    definition_problems,
    definition_version,
    find_leakage,
    group_by_name,
    groups,
)
from ct_assets.lib.data.landing import context_file, partition_files

DAY = "2013-01-02"


def _load_day(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, landing: Path) -> None:
    for table in spec.context_tables:
        data_steps.load_context(con, spec, table, context_file(landing, spec.name, table))
    data_steps.ingest_raw(con, spec, DAY, partition_files(landing, spec.name, DAY))
    data_steps.validate_partition(con, spec, DAY)


@pytest.fixture
def loaded(warehouse, flights_spec, flights_landing) -> duckdb.DuckDBPyConnection:
    _load_day(warehouse, flights_spec, flights_landing)
    for group in groups(flights_spec):
        data_steps.materialize_group(warehouse, flights_spec, group, DAY)
    data_steps.build_features(warehouse, flights_spec, DAY)
    return warehouse


def test_feature_table_has_every_declared_column_and_one_row_per_flight(loaded, flights_spec) -> None:
    columns = [r[0] for r in loaded.execute("DESCRIBE flights_delay.features").fetchall()]
    for column in [*flights_spec.feature_columns, "late", "flight_id", "sched_dep_at"]:
        assert column in columns
    rows, ids, late = loaded.execute(
        "SELECT count(*), count(DISTINCT flight_id), avg(late::INT) FROM flights_delay.features"
    ).fetchone()
    validated = loaded.execute("SELECT count(*) FROM flights_delay.validated").fetchone()[0]
    assert rows == ids == validated > 800
    assert 0.05 < late < 0.6


def test_weather_is_as_of_an_hour_before_departure(loaded) -> None:
    """Every weather feature comes from an observation at least 60 minutes before departure."""
    too_recent, matched = loaded.execute(
        "SELECT count(*) FILTER (WHERE weather_age_minutes < 60), count(weather_age_minutes) "
        "FROM flights_delay.features"
    ).fetchone()
    assert too_recent == 0 and matched > 800
    # and it is the latest such observation: none newer that is still old enough
    newer = loaded.execute(
        "SELECT count(*) FROM flights_delay.features f JOIN flights_delay.context_weather w "
        "ON w.origin = f.origin AND w.time_hour <= f.sched_dep_at - INTERVAL 1 HOUR "
        "AND w.time_hour > f.sched_dep_at - INTERVAL (f.weather_age_minutes) MINUTE"
    ).fetchone()[0]
    assert newer == 0


def test_no_feature_uses_information_from_after_departure(loaded, flights_spec) -> None:
    for group in groups(flights_spec):
        if group.name != "label":
            assert find_leakage(loaded, flights_spec, group, DAY) == {}, group.name


def test_label_is_detected_as_post_event(loaded, flights_spec) -> None:
    """The detector has power: the label is built from arrival delay, so it must be flagged."""
    assert "late" in find_leakage(loaded, flights_spec, group_by_name(flights_spec, "label"), DAY)


def _spec_with_sql(tmp_path: Path, spec: PipelineSpec, file: str, sql: str) -> PipelineSpec:
    folder = tmp_path / "pipeline"
    shutil.copytree(spec.spec_dir, folder)
    (folder / "features" / file).write_text(sql)
    return load_spec(folder / "spec.yaml")


LEAKY_WEATHER = """
SELECT v.flight_id, w.temp AS origin_temp, w.humid AS origin_humid,
    w.wind_speed AS origin_wind_speed, w.wind_gust AS origin_wind_gust, w.precip AS origin_precip,
    w.pressure AS origin_pressure, w.visib AS origin_visib, 0.0 AS weather_age_minutes
FROM validated AS v
ASOF LEFT JOIN weather AS w ON v.origin = w.origin AND v.sched_dep_at + INTERVAL 2 HOUR >= w.time_hour
"""

LEAKY_SCHEDULE = """
SELECT flight_id, carrier, origin, dest, distance::DOUBLE AS distance,
    coalesce(dep_delay, 0)::DOUBLE AS sched_hour, 0.0 AS sched_minute_of_day,
    '1' AS sched_weekday, month::DOUBLE AS sched_month
FROM validated
"""


@pytest.mark.parametrize(
    ("file", "sql", "group", "leaking"),
    [
        ("origin_weather.sql", LEAKY_WEATHER, "origin_weather", "origin_temp"),
        ("schedule.sql", LEAKY_SCHEDULE, "schedule", "sched_hour"),
    ],
)
def test_leaky_sql_is_caught(
    warehouse, flights_spec, flights_landing, tmp_path, file, sql, group, leaking
) -> None:
    spec = _spec_with_sql(tmp_path, flights_spec, file, sql)
    _load_day(warehouse, spec, flights_landing)
    found = find_leakage(warehouse, spec, group_by_name(spec, group), DAY)
    assert leaking in found


def test_sql_output_must_match_the_spec(warehouse, flights_spec, flights_landing, tmp_path) -> None:
    spec = _spec_with_sql(
        tmp_path,
        flights_spec,
        "plane.sql",
        "SELECT flight_id, tailnum, 1.0 AS plane_age FROM validated",
    )
    _load_day(warehouse, spec, flights_landing)
    with pytest.raises(
        FeatureDefinitionError,
        match=r"plane\.sql: output columns differ .*"
        r"missing \['plane_seats', 'plane_engines', 'plane_manufacturer'\]",
    ):
        data_steps.materialize_group(warehouse, spec, group_by_name(spec, "plane"), DAY)


def test_sql_that_does_not_bind_names_its_file_at_run_time(
    warehouse, flights_spec, flights_landing, tmp_path
) -> None:
    plane = (flights_spec.spec_dir / "features" / "plane.sql").read_text()
    spec = _spec_with_sql(tmp_path, flights_spec, "plane.sql", plane.replace("tailnum", "tail_num", 1))
    _load_day(warehouse, spec, flights_landing)
    with pytest.raises(FeatureDefinitionError) as raised:
        data_steps.materialize_group(warehouse, spec, group_by_name(spec, "plane"), DAY)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"{spec.spec_dir / 'features' / 'plane.sql'}: the SQL of feature group 'plane' fails: Binder Error: "
    )
    assert '"tail_num"' in message
    assert not warehouse.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'fg_plane'"
    ).fetchone()[0]


def test_sql_that_fails_on_the_data_names_its_file_and_partition(
    warehouse, flights_spec, flights_landing, tmp_path
) -> None:
    """It binds, then a value cannot be converted: the run's error names the SQL file."""
    plane = (flights_spec.spec_dir / "features" / "plane.sql").read_text()
    spec = _spec_with_sql(
        tmp_path, flights_spec, "plane.sql", plane.replace("p.seats::DOUBLE", "(v.tailnum || 'x')::DOUBLE", 1)
    )
    _load_day(warehouse, spec, flights_landing)
    with pytest.raises(FeatureDefinitionError) as raised:
        data_steps.materialize_group(warehouse, spec, group_by_name(spec, "plane"), DAY)
    message = str(raised.value)
    assert "\n" not in message and "Conversion Error" in message
    sql = spec.spec_dir / "features" / "plane.sql"
    assert message.startswith(f"{sql}: the SQL of feature group 'plane' fails on partition {DAY}: ")


def test_the_shipped_feature_sql_binds_to_empty_tables(flights_spec) -> None:
    assert definition_problems(flights_spec) == []


def test_sql_that_does_not_bind_is_found_without_data(flights_spec, tmp_path) -> None:
    # A misspelled column of a context table and of `validated`, each named by its file.
    weather = (flights_spec.spec_dir / "features" / "origin_weather.sql").read_text()
    misspelled = weather.replace("w.humid", "w.humidity")
    spec = _spec_with_sql(tmp_path, flights_spec, "origin_weather.sql", misspelled)
    label = "SELECT flight_id, arr_dealy > 15 AS late FROM validated"
    (spec.spec_dir / "features" / "label.sql").write_text(label)
    problems = definition_problems(spec)
    assert len(problems) == 2
    assert problems[0].startswith(
        f"{spec.spec_dir / 'features' / 'origin_weather.sql'}: the SQL of feature group 'origin_weather' "
        'fails: Binder Error: Table "w" does not have a column named "humidity"'
    )
    assert problems[1].startswith(
        f"{spec.spec_dir / 'features' / 'label.sql'}: the SQL of the label fails: Binder Error: "
        'Referenced column "arr_dealy" not found in FROM clause! Candidate bindings: "arr_delay"'
    )


def test_duplicating_sql_is_refused(warehouse, flights_spec, flights_landing, tmp_path) -> None:
    spec = _spec_with_sql(
        tmp_path,
        flights_spec,
        "plane.sql",
        "SELECT v.flight_id, v.tailnum, 1.0 AS plane_age, 1.0 AS plane_seats, 1.0 AS plane_engines,"
        " 'x' AS plane_manufacturer FROM validated v, (SELECT 1 UNION ALL SELECT 2)",
    )
    _load_day(warehouse, spec, flights_landing)
    with pytest.raises(FeatureDefinitionError, match="must return one row per input row"):
        data_steps.materialize_group(warehouse, spec, group_by_name(spec, "plane"), DAY)


def test_definition_version_changes_only_for_the_edited_group(flights_spec, tmp_path) -> None:
    edited = _spec_with_sql(
        tmp_path,
        flights_spec,
        "plane.sql",
        (flights_spec.spec_dir / "features" / "plane.sql").read_text() + "\n-- v2",
    )
    for group in groups(flights_spec):
        before = definition_version(flights_spec, group)
        after = definition_version(edited, group_by_name(edited, group.name))
        assert (before != after) == (group.name == "plane"), group.name
