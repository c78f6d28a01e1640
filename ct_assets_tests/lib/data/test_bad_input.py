"""Bad landing files: each gives a clear error naming the file, or quarantined rows with reasons.

Rows are real flights from the demo's first landing file, broken on purpose. Whatever happens,
rows in = valid rows + quarantined rows, and nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.ingest import SchemaDriftError
from ct_assets.lib.data.landing import LandingError, partition_files
from ct_assets.lib.data.steps import ingest_raw, validate_partition

DAY = "2013-01-01"


@pytest.fixture
def sample(flights_landing: Path, flights_spec: PipelineSpec) -> pd.DataFrame:
    """The first 40 flights of the day, as text exactly as landed."""
    path = flights_landing / flights_spec.name / f"{DAY}.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False).head(40)


def _land(
    tmp_path: Path,
    spec: PipelineSpec,
    frame: pd.DataFrame | None = None,
    text: str | None = None,
    name: str = f"{DAY}.csv",
) -> Path:
    folder = tmp_path / "landing" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if text is not None:
        path.write_text(text)
    elif frame is not None:
        frame.to_csv(path, index=False)
    return tmp_path / "landing"


def _run(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, landing: Path):
    files = partition_files(landing, spec.name, DAY)
    raw = ingest_raw(con, spec, DAY, files)
    report = validate_partition(con, spec, DAY)
    assert report.conserved and report.rows_in == raw.rows
    reasons = con.execute(
        f"SELECT _row_number, reason, row_values, unparsed_values FROM {spec.name}.quarantine "
        "ORDER BY _row_number"
    ).fetchall()
    return report, reasons


def test_clean_file_passes_whole(warehouse, flights_spec, tmp_path, sample) -> None:
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert (report.rows_in, report.rows_valid, reasons) == (40, 40, [])


def test_empty_file_is_refused_by_name(warehouse, flights_spec, tmp_path) -> None:
    landing = _land(tmp_path, flights_spec, text="")
    with pytest.raises(LandingError, match=r"2013-01-01\.csv: the file is empty"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))


def test_not_csv_or_parquet_is_refused(warehouse, flights_spec, tmp_path) -> None:
    landing = _land(tmp_path, flights_spec, text="PK\x03\x04zip", name=f"{DAY}.parquet")
    with pytest.raises(LandingError, match=r"2013-01-01\.parquet: not a Parquet file"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))
    (landing / flights_spec.name / f"{DAY}.parquet").unlink()
    (landing / flights_spec.name / DAY).mkdir()
    (landing / flights_spec.name / DAY / "part.xlsx").write_text("x")
    with pytest.raises(LandingError, match=r"part\.xlsx: not a CSV or Parquet file"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))


def test_missing_file_names_where_it_was_expected(flights_spec, tmp_path) -> None:
    with pytest.raises(LandingError, match=r"no landing file for partition 2013-01-01"):
        partition_files(tmp_path, flights_spec.name, DAY)


def test_truncated_csv_quarantines_the_cut_line(warehouse, flights_spec, tmp_path, sample) -> None:
    text = sample.to_csv(index=False)
    cut = text[: len(text) - 60]  # the last line loses its final fields
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, text=cut))
    assert report.rows_in == 40 and report.rows_quarantined == 1
    row_number, reason, _, unparsed = reasons[0]
    assert row_number == 40
    assert "malformed line" in reason and "Expected Number of Columns" in reason
    assert cut.splitlines()[-1] in unparsed  # the original line is kept


def test_missing_required_column_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = _land(tmp_path, flights_spec, sample.drop(columns=["carrier"]))
    with pytest.raises(
        SchemaDriftError, match=r"2013-01-01\.csv: schema drift: missing columns \['carrier'\]"
    ):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))


def test_extra_column_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = _land(tmp_path, flights_spec, sample.assign(gate="B12"))
    with pytest.raises(SchemaDriftError, match=r"unexpected columns \['gate'\]"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))


def test_changed_parquet_type_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    folder = tmp_path / "landing" / flights_spec.name
    folder.mkdir(parents=True)
    sample.to_parquet(folder / f"{DAY}.parquet")  # every column is text now
    with pytest.raises(SchemaDriftError, match=r"changed column types: .*year is VARCHAR, spec says integer"):
        ingest_raw(
            warehouse,
            flights_spec,
            DAY,
            partition_files(tmp_path / "landing", flights_spec.name, DAY),
        )


def test_changed_csv_type_is_schema_drift(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = _land(tmp_path, flights_spec, sample.assign(distance="far"))
    with pytest.raises(SchemaDriftError, match=r"distance \(none of 40 values is a valid integer\)"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))


def test_string_in_numeric_column_is_quarantined(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[3, "dep_delay"] = "late-ish"
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert report.rows_quarantined == 1
    row_number, reason, _, unparsed = reasons[0]
    assert row_number == 4
    assert reason == "dep_delay 'late-ish' is not a valid value for its type"
    assert '"late-ish"' in unparsed


def test_out_of_range_and_null_values_are_quarantined(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[0, "distance"] = "99999"
    sample.loc[1, "carrier"] = "ZZ"
    sample.loc[2, "origin"] = ""
    sample.loc[3, "dep_delay"] = "-500"
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert report.rows_quarantined == 4 and report.rows_valid == 36
    by_row = {row: reason for row, reason, _, _ in reasons}
    assert by_row[1] == "distance 99999 is above the maximum 6000"
    assert by_row[2] == "carrier 'ZZ' is not an allowed value"
    assert by_row[3] == "origin is missing (the column is required)"
    assert by_row[4] == "dep_delay -500.0 is below the minimum -120"


def test_duplicate_entity_ids_are_all_quarantined(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[5, "flight_id"] = sample.loc[4, "flight_id"]
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert [row for row, *_ in reasons] == [5, 6] and report.rows_valid == 38
    assert all("appears more than once in the partition" in reason for _, reason, *_ in reasons)


def test_timestamp_outside_partition_is_quarantined(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[7, "sched_dep_at"] = "2013-01-02T12:00:00Z"
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert report.rows_quarantined == 1
    assert "is outside the partition window [2013-01-01T00:00:00-05:00" in reasons[0][1]


def test_several_files_in_a_partition_folder_keep_their_provenance(
    warehouse, flights_spec, tmp_path, sample
) -> None:
    folder = tmp_path / "landing" / flights_spec.name / DAY
    folder.mkdir(parents=True)
    sample.head(25).to_csv(folder / "a.csv", index=False)
    sample.tail(15).to_csv(folder / "b.csv", index=False)
    report, _ = _run(warehouse, flights_spec, tmp_path / "landing")
    files = warehouse.execute(
        f"SELECT _source_file, count(*) FROM {flights_spec.name}.validated GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert report.rows_valid == 40
    assert [(Path(f).name, n) for f, n in files] == [("a.csv", 25), ("b.csv", 15)]


def test_a_clean_partition_then_a_bad_one_in_the_same_warehouse(
    warehouse, flights_spec, tmp_path, sample
) -> None:
    """The quarantine table's schema must not depend on the first partition having no bad rows."""
    _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    sample.loc[0, "carrier"] = "ZZ"
    report, reasons = _run(warehouse, flights_spec, _land(tmp_path, flights_spec, sample))
    assert report.rows_quarantined == 1 and reasons[0][1] == "carrier 'ZZ' is not an allowed value"
