"""Row validation on real flights: every broken row gets a readable reason naming the column, the
value and the rule; clean rows get none."""

from __future__ import annotations

import pandas as pd
import pytest

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.ingest import stage_partition
from ct_assets.lib.data.landing import partition_files
from ct_assets.lib.data.validation import find_bad_rows, row_model
from ct_assets_tests.lib.data.conftest import DAY, land


def _bad_rows(con, spec: PipelineSpec, tmp_path, frame: pd.DataFrame) -> dict[int, str]:
    """Stage `frame` as the day's landing file and validate it as validate_partition does."""
    landing = land(tmp_path, spec, frame)
    stage, _ = stage_partition(
        con, partition_files(landing, spec.name, DAY), spec.columns, "2013-01-02T00:00:00+00:00"
    )
    columns = ", ".join(f'"{c}"' for c in spec.columns)
    typed = con.sql(f"SELECT _cast_errors, {columns} FROM {stage} ORDER BY _row_number").to_arrow_table()
    return find_bad_rows(typed.to_pandas(), spec, partition_window(spec.partitions, DAY))


def test_clean_rows_have_no_reasons(warehouse, flights_spec, tmp_path, sample) -> None:
    assert _bad_rows(warehouse, flights_spec, tmp_path, sample) == {}


def test_string_in_numeric_column(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[3, "dep_delay"] = "late-ish"
    assert _bad_rows(warehouse, flights_spec, tmp_path, sample) == {
        3: "dep_delay 'late-ish' is not a valid value for its type"
    }


def test_out_of_range_disallowed_and_missing_values(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[0, "distance"] = "99999"
    sample.loc[1, "carrier"] = "ZZ"
    sample.loc[2, "origin"] = ""
    sample.loc[3, "dep_delay"] = "-500"
    assert _bad_rows(warehouse, flights_spec, tmp_path, sample) == {
        0: "distance 99999 is above the maximum 6000",
        1: "carrier 'ZZ' is not an allowed value",
        2: "origin is missing (the column is required)",
        3: "dep_delay -500.0 is below the minimum -120",
    }


def test_several_failures_of_one_row_are_joined(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[6, "distance"] = "99999"
    sample.loc[6, "carrier"] = "ZZ"
    reason = _bad_rows(warehouse, flights_spec, tmp_path, sample)[6]
    assert sorted(reason.split("; ")) == [
        "carrier 'ZZ' is not an allowed value",
        "distance 99999 is above the maximum 6000",
    ]


def test_duplicate_entity_ids_are_all_reported(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[5, "flight_id"] = sample.loc[4, "flight_id"]
    bad = _bad_rows(warehouse, flights_spec, tmp_path, sample)
    assert sorted(bad) == [4, 5]
    assert all("appears more than once in the partition" in reason for reason in bad.values())


def test_timestamp_outside_the_partition_window(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[7, "sched_dep_at"] = "2013-01-02T12:00:00Z"
    (reason,) = _bad_rows(warehouse, flights_spec, tmp_path, sample).values()
    assert "is outside the partition window [2013-01-01T00:00:00-05:00" in reason


def test_row_model_carries_the_spec_rules(flights_spec) -> None:
    model = row_model(flights_spec, partition_window(flights_spec.partitions, DAY))
    schema = model.to_schema()
    assert set(schema.columns) == set(flights_spec.columns)
    assert schema.columns[flights_spec.entity_id].unique
    assert not schema.columns["origin"].nullable and schema.columns["dep_time"].nullable


def test_a_frame_without_the_spec_columns_is_a_schema_level_error(flights_spec) -> None:
    frame = pd.DataFrame({"_cast_errors": pd.Series([], dtype=object)})
    with pytest.raises(ValueError, match="partition fails schema-level checks"):
        find_bad_rows(frame, flights_spec, partition_window(flights_spec.partitions, DAY))
