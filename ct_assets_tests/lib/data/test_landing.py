"""Landing files: finding a partition's files, recognising their format by their bytes, context
files, the keys landed so far, checksums and atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ct_assets.lib.data.landing import (
    LandingError,
    context_file,
    file_format,
    landed_partition_keys,
    partition_files,
    sha256_of,
    write_atomically,
)

DAY = "2013-01-01"


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def test_csv_and_parquet_are_recognised_by_their_bytes(tmp_path: Path) -> None:
    import pandas as pd

    csv = _write(tmp_path / "a.CSV", "x,y\n1,2\n")
    parquet = tmp_path / "b.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(parquet)
    assert (file_format(csv), file_format(parquet)) == ("csv", "parquet")


def test_empty_file_is_refused_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path / f"{DAY}.csv", "")
    with pytest.raises(LandingError, match=r"2013-01-01\.csv: the file is empty"):
        file_format(path)


def test_not_csv_or_parquet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match=r"2013-01-01\.parquet: not a Parquet file"):
        file_format(_write(tmp_path / f"{DAY}.parquet", "PK\x03\x04zip"))
    with pytest.raises(LandingError, match=r"part\.xlsx: not a CSV or Parquet file"):
        file_format(_write(tmp_path / "part.xlsx", "x"))
    with pytest.raises(LandingError, match=r"binary\.csv: not a text CSV file"):
        file_format(_write(tmp_path / "binary.csv", b"\x00\x01\x02\x03rest"))


def test_missing_file_names_where_it_was_expected(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match=r"no landing file for partition 2013-01-01 of flights"):
        partition_files(tmp_path, "flights", DAY)


def test_partition_files_single_file_and_folder_sorted_without_hidden_files(tmp_path: Path) -> None:
    folder = tmp_path / "flights"
    single = _write(folder / f"{DAY}.csv", "a\n1\n")
    _write(folder / DAY / "b.csv", "a\n2\n")
    _write(folder / DAY / "a.parquet", "PAR1")
    _write(folder / DAY / ".b.csv.tmp", "half")
    (folder / DAY / "nested").mkdir()
    assert partition_files(tmp_path, "flights", DAY) == [
        single,
        folder / DAY / "a.parquet",
        folder / DAY / "b.csv",
    ]


def test_context_file_prefers_csv_and_names_what_is_missing(tmp_path: Path) -> None:
    context = tmp_path / "flights" / "_context"
    _write(context / "weather.parquet", "PAR1")
    assert context_file(tmp_path, "flights", "weather") == context / "weather.parquet"
    _write(context / "weather.csv", "a\n")
    assert context_file(tmp_path, "flights", "weather") == context / "weather.csv"
    with pytest.raises(LandingError, match=r"no file for context table 'planes'"):
        context_file(tmp_path, "flights", "planes")


def test_landed_partition_keys_skip_context_and_hidden_entries(tmp_path: Path) -> None:
    assert landed_partition_keys(tmp_path, "flights") == []
    folder = tmp_path / "flights"
    _write(folder / "2013-01-02.csv", "a\n")
    _write(folder / "2013-01-01.parquet", "PAR1")
    _write(folder / "2013-01-03" / "part.csv", "a\n")
    _write(folder / "2013-01-02" / "extra.csv", "a\n")  # same key as a file: counted once
    _write(folder / "_context" / "weather.csv", "a\n")
    _write(folder / ".2013-01-04.csv.tmp", "a\n")
    assert landed_partition_keys(tmp_path, "flights") == ["2013-01-01", "2013-01-02", "2013-01-03"]


def test_a_key_is_landed_only_where_partition_files_finds_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "flights"
    _write(folder / "2013-01-05.txt", "a\n")  # not a landing format
    _write(folder / "2013-01-06.csv.gz", "a\n")
    (folder / "2013-01-07").mkdir()  # an empty folder
    _write(folder / "2013-01-08" / ".part.csv.tmp", "a\n")  # only a hidden file
    _write(folder / "2013-01-09" / "part.csv", "a\n")
    assert landed_partition_keys(tmp_path, "flights") == ["2013-01-09"]
    for key in ["2013-01-05", "2013-01-06", "2013-01-07", "2013-01-08"]:
        with pytest.raises(LandingError, match=f"no landing file for partition {key}"):
            partition_files(tmp_path, "flights", key)
    assert partition_files(tmp_path, "flights", "2013-01-09") == [folder / "2013-01-09" / "part.csv"]


def test_sha256_of_matches_hashlib_across_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # over one 1 MiB read block
    path = _write(tmp_path / "big.bin", data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_write_atomically_creates_folders_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / f"{DAY}.csv"
    write_atomically(path, b"first")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
