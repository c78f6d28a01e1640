"""The data steps on real flights: raw, validated and quarantined partitions, context tables.

Rows are real flights from the demo's first landing file, some broken on purpose. Whatever happens,
rows in = valid rows + quarantined rows, nothing is dropped silently, and a partition written twice
is replaced, never appended.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.ingest import SchemaDriftError
from ct_assets.lib.data.landing import LandingError, context_file, partition_files
from ct_assets.lib.data.steps import ingest_raw, load_context, validate_partition
from ct_assets_tests.lib.data.conftest import DAY, land


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
    report, reasons = _run(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    assert (report.rows_in, report.rows_valid, reasons) == (40, 40, [])
    assert report.quarantine_rate == 0.0 and report.null_rates["dep_delay"] == 0.0


def test_raw_report_and_tags_describe_the_files(warehouse, flights_spec, tmp_path, sample) -> None:
    landing = land(tmp_path, flights_spec, sample)
    raw = ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))
    assert raw.rows == 40 and raw.malformed_lines == 0
    assert raw.event_start.startswith("2013-01-01") and raw.event_end >= raw.event_start
    lag = datetime.fromisoformat(raw.ingested_at) - datetime.fromisoformat(raw.event_end)
    assert raw.arrival_lag_hours == pytest.approx(lag.total_seconds() / 3600, abs=0.01)
    rows, files = warehouse.execute(f"SELECT rows, files FROM {flights_spec.name}.raw_tags").fetchone()
    assert rows == 40 and json.loads(files)[0]["sha256"] == raw.files[0].sha256


def test_an_unreadable_file_writes_nothing(warehouse, flights_spec, tmp_path) -> None:
    landing = land(tmp_path, flights_spec, text="")
    with pytest.raises(LandingError, match=r"2013-01-01\.csv: the file is empty"):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))
    tables = warehouse.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()
    assert tables == []


def test_schema_drift_leaves_the_previous_raw_partition(warehouse, flights_spec, tmp_path, sample) -> None:
    _run(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    landing = land(tmp_path, flights_spec, sample.drop(columns=["carrier"]))
    with pytest.raises(SchemaDriftError):
        ingest_raw(warehouse, flights_spec, DAY, partition_files(landing, flights_spec.name, DAY))
    assert warehouse.execute(f"SELECT count(*) FROM {flights_spec.name}.raw").fetchone()[0] == 40


def test_truncated_csv_quarantines_the_cut_line(warehouse, flights_spec, tmp_path, sample) -> None:
    text = sample.to_csv(index=False)
    cut = text[: len(text) - 60]  # the last line loses its final fields
    report, reasons = _run(warehouse, flights_spec, land(tmp_path, flights_spec, text=cut))
    assert report.rows_in == 40 and report.rows_quarantined == 1
    row_number, reason, _, unparsed = reasons[0]
    assert row_number == 40
    assert "malformed line" in reason and "Expected Number of Columns" in reason
    assert cut.splitlines()[-1] in unparsed  # the original line is kept


def test_quarantined_rows_keep_their_values_and_reasons(warehouse, flights_spec, tmp_path, sample) -> None:
    sample.loc[3, "dep_delay"] = "late-ish"
    sample.loc[0, "carrier"] = "ZZ"
    sample.loc[1, "carrier"] = "QQ"
    report, reasons = _run(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    assert (report.rows_quarantined, report.rows_valid) == (3, 37)
    assert report.reasons == {
        "carrier … is not an allowed value": 2,
        "dep_delay … is not a valid value for its type": 1,
    }
    by_row = {row: (reason, json.loads(values), unparsed) for row, reason, values, unparsed in reasons}
    assert by_row[1][1]["carrier"] == "ZZ" and by_row[1][2] is None
    assert by_row[4][1]["dep_delay"] is None and '"late-ish"' in by_row[4][2]


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
    """The quarantine table's schema must not depend on the first partition having no bad rows;
    the second write replaces the first."""
    _run(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    sample.loc[0, "carrier"] = "ZZ"
    report, reasons = _run(warehouse, flights_spec, land(tmp_path, flights_spec, sample))
    assert report.rows_quarantined == 1 and reasons[0][1] == "carrier 'ZZ' is not an allowed value"
    counts = warehouse.execute(
        f"SELECT (SELECT count(*) FROM {flights_spec.name}.raw), "
        f"(SELECT count(*) FROM {flights_spec.name}.validated)"
    ).fetchone()
    assert counts == (40, 39)


def test_load_context_sets_unparsable_rows_aside(warehouse, flights_spec, flights_landing, tmp_path) -> None:
    import pandas as pd

    source = context_file(flights_landing, flights_spec.name, "weather")
    weather = pd.read_csv(source, dtype=str, keep_default_na=False).head(100)
    weather.loc[5, "temp"] = "warm"
    path = tmp_path / "weather.csv"
    weather.to_csv(path, index=False)
    report = load_context(warehouse, flights_spec, "weather", path)
    assert (report.rows, report.unparsed_rows, report.file.rows) == (99, 1, 100)
    rejected = warehouse.execute(
        f"SELECT _row_number, _cast_errors FROM {flights_spec.name}.context_weather_rejects"
    ).fetchall()
    assert rejected == [(6, '{"temp":"warm"}')]
    again = load_context(warehouse, flights_spec, "weather", source)  # replaces, never appends
    assert again.unparsed_rows == 0 and again.rows > 20_000
