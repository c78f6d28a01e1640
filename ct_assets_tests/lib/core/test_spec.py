"""Spec loading: the flights spec is valid; every kind of bad spec names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.core.spec import PipelineSpec, SpecError, load_all_specs, load_spec
from ct_assets_tests.conftest import FLIGHTS_SPEC, write_flights_variant


def test_flights_spec_declares_features_by_kind(flights_spec: PipelineSpec) -> None:
    assert flights_spec.name == "flights_delay"
    assert "carrier" in flights_spec.categorical_features
    assert "origin_temp" in flights_spec.numeric_features
    assert flights_spec.label.column == "late"
    # nothing known only after departure may be a feature
    assert not set(flights_spec.post_event_columns) & set(flights_spec.feature_columns)


def test_flights_spec_marks_its_id_and_calendar_columns(flights_spec: PipelineSpec) -> None:
    assert {"flight_id", "flight", "tailnum", "year", "month", "day"} <= flights_spec.unmonitored_columns
    assert "dep_delay" not in flights_spec.unmonitored_columns
    # a feature's own role, or the role of the landing column of the same name (tailnum)
    assert flights_spec.unmonitored_features == {"sched_month", "sched_weekday", "tailnum"}


def _write_variant(tmp_path: Path, change: dict) -> Path:
    return write_flights_variant(tmp_path / "variant", change)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "blue"}, "key 'colour': unknown key"),
        ({"gate.min_auc": 1.5}, "key 'gate.min_auc'"),
        ({"gate.max_log_loss": 0.7}, "key 'gate.max_log_loss': unknown key"),
        ({"quality.max_quarantine_rate": -0.1}, "key 'quality.max_quarantine_rate'"),
        ({"entity_id": "no_such_column"}, "entity_id 'no_such_column' is not among the columns"),
        ({"segments": ["origin", "gate_number"]}, "segments ['gate_number'] are neither columns"),
        ({"post_event_columns": ["dep_delay", "wheels_off"]}, "post_event_columns ['wheels_off']"),
        ({"partitions.grain": "hourly"}, "key 'partitions.grain'"),
        ({"columns.day.role": "weekday"}, "key 'columns.day.role'"),
        ({"feature_groups.schedule.columns.distance.role": "skip"}, "key 'feature_groups.schedule"),
        ({"partitions.timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"label.sql": "features/missing.sql"}, "SQL file 'features/missing.sql' does not exist"),
        ({"columns.dep_delay.min": 10, "columns.dep_delay.max": 1}, "min 10.0 is greater than max"),
        ({"name": "Flights Delay"}, "key 'name'"),
        ({"source": None}, "key 'source': Field required"),
        ({"serving.max_health_window_seconds": 10}, "max_health_window_seconds must be at least"),
    ],
)
def test_bad_spec_names_file_and_key(tmp_path: Path, change: dict, expected: str) -> None:
    path = _write_variant(tmp_path, change)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_unreadable_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(path)


def test_duplicate_pipeline_names_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder / "features").mkdir(parents=True)
        for sql in (FLIGHTS_SPEC.parent / "features").glob("*.sql"):
            (tmp_path / folder / "features" / sql.name).write_text(sql.read_text())
        (tmp_path / folder / "spec.yaml").write_text(FLIGHTS_SPEC.read_text())
    with pytest.raises(SpecError, match="is used by"):
        load_all_specs(tmp_path)
