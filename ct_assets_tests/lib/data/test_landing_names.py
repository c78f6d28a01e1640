"""Landing files whose name is not a partition key: each is found, with the key(s) to rename it
to; entries that are not landing data are left out."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from ct_assets.lib.core.spec import PartitionSpec
from ct_assets.lib.data.landing import landed_partition_keys
from ct_assets.lib.data.landing_names import misnamed, reason

WEEKLY = PartitionSpec(grain="weekly", start=date(2017, 1, 1), end=date(2017, 3, 5))
MONTHLY = PartitionSpec(grain="monthly", start=date(2017, 1, 1))
DAILY = PartitionSpec(grain="daily", start=date(2017, 1, 1))


@pytest.mark.parametrize(
    ("spec", "name", "why"),
    [
        (
            WEEKLY,
            "2017-01-03",
            "2017-01-03 is a Tuesday, and weekly partitions are keyed by their Sunday: rename it "
            "2017-01-01 (the week it falls in) or 2017-01-08 (the next week)",
        ),
        (
            WEEKLY,
            "2017-03-01",  # in the last week: there is no next one
            "2017-03-01 is a Wednesday, and weekly partitions are keyed by their Sunday: rename it "
            "2017-02-26 (the week it falls in)",
        ),
        (WEEKLY, "2016-12-25", "2016-12-25 is before the first partition, 2017-01-01"),
        (
            WEEKLY,
            "2017-03-05",
            "2017-03-05 is after the last partition, 2017-02-26 (the spec's end 2017-03-05 is exclusive)",
        ),
        (
            MONTHLY,
            "2017-02-15",
            "2017-02-15 is not the first of a month, and monthly partitions are keyed by it: rename it "
            "2017-02-01 (the month it falls in) or 2017-03-01 (the next month)",
        ),
        (
            DAILY,
            "2017-1-3",
            "not a partition key: the name must be the ISO date its partition starts on, such as 2017-01-01",
        ),
        (
            DAILY,
            "flights",
            "not a partition key: the name must be the ISO date its partition starts on, such as 2017-01-01",
        ),
    ],
)
def test_a_name_that_is_not_a_key_says_what_it_should_be(spec: PartitionSpec, name: str, why: str) -> None:
    assert reason(spec, name) == why


@pytest.mark.parametrize(
    ("spec", "name"),
    [(WEEKLY, "2017-01-08"), (WEEKLY, "2017-02-26"), (MONTHLY, "2030-01-01"), (DAILY, "2017-01-03")],
)
def test_a_key_is_not_misnamed_even_before_its_partition_ends(spec: PartitionSpec, name: str) -> None:
    assert reason(spec, name) is None


def test_misnamed_entries_of_a_landing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "weekly"
    folder.mkdir()
    for name in ["2017-01-01.csv", "2017-01-03.csv", "2017-01-08.CSV", "notes.txt", "2017-01-10.csv.tmp"]:
        (folder / name).write_text("a\n")
    (folder / ".2017-01-04.csv.tmp").write_text("a\n")  # a partial write
    (folder / "_context").mkdir()
    (folder / "_context" / "weather.csv").write_text("a\n")
    (folder / "2017-01-11").mkdir()
    (folder / "2017-01-11" / "part.parquet").write_text("PAR1")
    (folder / "2017-01-12").mkdir()  # empty: no data
    found = misnamed(tmp_path, "weekly", WEEKLY)
    assert [(entry.path.name, entry.reason.split(":")[0]) for entry in found] == [
        ("2017-01-03.csv", "2017-01-03 is a Tuesday, and weekly partitions are keyed by their Sunday"),
        ("2017-01-08.CSV", "the extension must be lower-case"),
        ("2017-01-11", "2017-01-11 is a Wednesday, and weekly partitions are keyed by their Sunday"),
    ]
    assert str(found[1]) == (
        f"{folder / '2017-01-08.CSV'}: its rows are not ingested: the extension must be lower-case: "
        "rename it 2017-01-08.csv"
    )
    # every name a file source lands, misnamed ones included: callers keep the keys `reason` accepts
    assert landed_partition_keys(tmp_path, "weekly") == ["2017-01-01", "2017-01-03", "2017-01-11"]
    assert misnamed(tmp_path, "no_such_pipeline", WEEKLY) == []
