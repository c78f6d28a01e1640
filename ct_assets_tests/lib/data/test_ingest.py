"""Staging landing files: typed columns with provenance, unparsable values kept as text, malformed
lines kept whole, and schema drift refused with the file and the columns named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.ingest import SchemaDriftError, stage_file, stage_partition
from ct_assets.lib.data.landing import partition_files, sha256_of
from ct_assets_tests.lib.data.conftest import DAY, land

NOW = "2013-01-02T00:00:00+00:00"
_PROVENANCE = "_source_file, _source_sha256, _row_number, _ingested_at, _cast_errors"


def _stage(con, spec: PipelineSpec, landing: Path):
    return stage_partition(con, partition_files(landing, spec.name, DAY), spec.columns, NOW)


def test_clean_csv_is_typed_with_provenance(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = land(tmp_path, flights_spec, sample)
    stage, (report,) = _stage(warehouse, flights_spec, landing)
    path = landing / flights_spec.name / f"{DAY}.csv"
    assert (report.rows, report.malformed_lines, report.sha256) == (40, 0, sha256_of(path))
    types = dict(warehouse.execute(f"SELECT column_name, column_type FROM (DESCRIBE {stage})").fetchall())
    assert (types["year"], types["dep_delay"], types["sched_dep_at"]) == (
        "BIGINT",
        "DOUBLE",
        "TIMESTAMP WITH TIME ZONE",
    )
    numbers, files, errors = warehouse.execute(
        f"SELECT list(_row_number ORDER BY _row_number), list(DISTINCT _source_file), "
        f"count(_cast_errors) FROM {stage}"
    ).fetchone()
    assert numbers == list(range(1, 41)) and files == [str(path)] and errors == 0


def test_unparsable_value_is_kept_as_text_in_cast_errors(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[3, "dep_delay"] = "late-ish"
    stage, _ = _stage(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    row_number, delay, errors = warehouse.execute(
        f"SELECT _row_number, dep_delay, _cast_errors FROM {stage} WHERE _cast_errors IS NOT NULL"
    ).fetchall()[0]
    assert (row_number, delay, json.loads(errors)) == (4, None, {"dep_delay": "late-ish"})


def test_a_fraction_in_an_integer_column_is_a_cast_error_not_rounded(
    warehouse, flights_spec, tmp_path, sample
) -> None:
    """DuckDB rounds '4.5' to 5 when it casts to an integer; an integral '1576.0' is the integer."""
    sample["distance"] = sample["distance"].astype(str)
    sample.loc[3, "distance"] = "1576.5"
    sample.loc[5, "distance"] = "1576.0"
    stage, _ = _stage(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    rows = warehouse.execute(
        f"SELECT _row_number, distance, _cast_errors FROM {stage} WHERE _row_number IN (4, 6) ORDER BY 1"
    ).fetchall()
    assert rows[0][:2] == (4, None) and json.loads(rows[0][2]) == {"distance": "1576.5"}
    assert rows[1] == (6, 1576, None)


def test_truncated_csv_keeps_the_cut_line_whole(warehouse, flights_spec, tmp_path, sample) -> None:
    text = sample.to_csv(index=False)
    cut = text[: len(text) - 60]  # the last line loses its final fields
    stage, (report,) = _stage(warehouse, flights_spec, land(tmp_path, flights_spec, text=cut))
    assert (report.rows, report.malformed_lines) == (40, 1)
    row_number, errors = warehouse.execute(
        f"SELECT _row_number, _cast_errors FROM {stage} WHERE _cast_errors IS NOT NULL"
    ).fetchall()[0]
    assert row_number == 40
    assert json.loads(errors)["_line"] == cut.splitlines()[-1]
    assert "Expected Number of Columns" in json.loads(errors)["_error"]


def test_missing_required_column_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = land(tmp_path, flights_spec, sample.drop(columns=["carrier"]))
    with pytest.raises(
        SchemaDriftError, match=r"2013-01-01\.csv: schema drift: missing columns \['carrier'\]"
    ):
        _stage(warehouse, flights_spec, landing)


def test_extra_column_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = land(tmp_path, flights_spec, sample.assign(gate="B12"))
    with pytest.raises(SchemaDriftError, match=r"unexpected columns \['gate'\]"):
        _stage(warehouse, flights_spec, landing)


def test_changed_parquet_type_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    folder = tmp_path / "landing" / flights_spec.name
    folder.mkdir(parents=True)
    sample.to_parquet(folder / f"{DAY}.parquet")  # every column is text now
    with pytest.raises(SchemaDriftError, match=r"changed column types: .*year is VARCHAR, spec says integer"):
        _stage(warehouse, flights_spec, tmp_path / "landing")


def test_changed_csv_type_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = land(tmp_path, flights_spec, sample.assign(distance="far"))
    with pytest.raises(SchemaDriftError, match=r"distance \(none of 40 values is a valid integer\)"):
        _stage(warehouse, flights_spec, landing)


def test_typed_parquet_is_staged_with_one_based_row_numbers(
    warehouse, flights_spec, tmp_path, sample
) -> None:
    csv_landing = land(tmp_path / "csv", flights_spec, sample)
    typed_stage, _ = _stage(warehouse, flights_spec, csv_landing)
    typed = warehouse.execute(f"SELECT * EXCLUDE ({_PROVENANCE}) FROM {typed_stage}").df()
    folder = tmp_path / "pq" / "landing" / flights_spec.name
    folder.mkdir(parents=True)
    typed.to_parquet(folder / f"{DAY}.parquet")
    stage = stage_file(warehouse, folder / f"{DAY}.parquet", flights_spec.columns, "_pq", NOW)
    assert (stage.rows, stage.malformed_lines) == (40, 0)
    numbers = warehouse.execute("SELECT min(_row_number), max(_row_number) FROM _pq").fetchone()
    assert numbers == (1, 40)
    again = warehouse.execute(f"SELECT * EXCLUDE ({_PROVENANCE}) FROM _pq").df()
    pd.testing.assert_frame_equal(again, typed)


def test_several_files_are_staged_together(warehouse, flights_spec, tmp_path, sample) -> None:
    folder = tmp_path / "landing" / flights_spec.name / DAY
    folder.mkdir(parents=True)
    sample.head(25).to_csv(folder / "a.csv", index=False)
    sample.tail(15).to_csv(folder / "b.csv", index=False)
    stage, reports = _stage(warehouse, flights_spec, tmp_path / "landing")
    assert [(Path(r.path).name, r.rows) for r in reports] == [("a.csv", 25), ("b.csv", 15)]
    assert warehouse.execute(f"SELECT count(*) FROM {stage}").fetchone()[0] == 40
