"""CSV separator and encoding: declared in the spec, read when declared, named when they differ.

Files are real files read through the real staging step on a DuckDB connection; the messages must
name the file, what it looks like and what the spec expects, once.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib.core.spec import ColumnSpec
from ct_assets.lib.data.csv_format import (
    DEFAULT_CSV,
    CsvFormat,
    CsvFormatError,
    sniff_delimiter,
    sniff_encoding,
)
from ct_assets.lib.data.ingest import stage_file
from ct_assets.lib.data.landing import LandingError

COLUMNS = {
    "id": ColumnSpec(type="integer"),
    "city": ColumnSpec(type="string"),
    "value": ColumnSpec(type="float"),
}
ROWS = "id;city;value\n1;Zürich;1.5\n2;Besançon;2.5\n3;Malmö;3.5\n"


def _stage(path: Path, layout: CsvFormat = DEFAULT_CSV) -> list[tuple]:
    con = duckdb.connect()
    stage_file(con, path, COLUMNS, "s", "2026-01-01T00:00:00+00:00", layout)
    return con.execute("SELECT _row_number, id, city, value, _cast_errors FROM s ORDER BY 1").fetchall()


def test_a_semicolon_latin1_file_is_named_with_what_it_looks_like_and_what_the_spec_expects(
    tmp_path: Path,
) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_bytes(ROWS.encode("latin-1"))
    with pytest.raises(CsvFormatError) as refused:
        _stage(path)
    message = str(refused.value)
    assert str(path) in message
    assert "encoding looks like latin-1, the spec expects utf-8" in message
    assert "separated by ';', the spec expects ','" in message
    assert "missing columns" not in message


def test_declared_latin1_and_semicolon_are_read_with_every_character(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_bytes(ROWS.encode("latin-1"))
    rows = _stage(path, CsvFormat(delimiter=";", encoding="latin-1"))
    assert [(r[1], r[2], r[3]) for r in rows] == [(1, "Zürich", 1.5), (2, "Besançon", 2.5), (3, "Malmö", 3.5)]
    assert all(r[4] is None for r in rows)


def test_declared_utf16_is_read(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_bytes(ROWS.replace(";", ",").encode("utf-16"))
    rows = _stage(path, CsvFormat(encoding="utf-16"))
    assert [r[2] for r in rows] == ["Zürich", "Besançon", "Malmö"]


def test_a_utf16_file_not_declared_is_named(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_bytes(ROWS.replace(";", ",").encode("utf-16"))
    with pytest.raises(CsvFormatError, match="encoding looks like utf-16, the spec expects utf-8"):
        _stage(path)


def test_a_tab_separated_file_is_named_when_the_spec_expects_commas(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_text(ROWS.replace(";", "\t"))
    with pytest.raises(CsvFormatError, match="separated by tab, the spec expects ','"):
        _stage(path)


def test_a_truncated_row_is_quarantined_with_one_reason_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.csv"
    path.write_text("id,city,value\n1,Zurich,1.5\n2\n3,Malmo,3.5\n")
    rows = _stage(path)
    assert len(rows) == 3  # rows in = rows staged: the short line is kept for quarantine
    (bad,) = [r for r in rows if r[4] is not None]
    assert bad[0] == 2
    assert bad[4].count("Expected Number of Columns") == 1
    assert "line 3:" in bad[4]


def test_a_file_named_parquet_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    path = tmp_path / "2020-01.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 16 + b"not parquet at all")
    with pytest.raises(LandingError) as refused:
        _stage(path)
    assert str(refused.value).startswith(f"{path}: not readable Parquet")
    assert "\n" not in str(refused.value)


def test_sniffing_rules() -> None:
    assert sniff_encoding(codecs.BOM_UTF16_LE + "a".encode("utf-16-le")) == "utf-16"
    assert sniff_encoding("Zürich".encode()) == "utf-8"
    assert sniff_encoding("Zürich".encode()[:2]) == "utf-8"  # a character cut at the sample's end
    assert sniff_encoding("Zürich".encode("latin-1")) == "latin-1"
    assert sniff_delimiter("a;b;c") == ";"
    assert sniff_delimiter("a|b|c") == "|"
    assert sniff_delimiter("single") is None
