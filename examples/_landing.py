"""Write an example dataset's partitions as landing files for the fetch scripts:
`land_files(frame, keys, landing, pipeline)` writes one CSV per partition key to
`<landing>/<pipeline>/<key>.csv` (`land_months` keys each row by the first day of its month),
each written beside (in a hidden scratch folder) and then renamed into place, so a landing sensor
never reads half a file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def land_files(frame: pd.DataFrame, keys: pd.Series, landing: Path, pipeline: str) -> list[Path]:
    """One CSV per distinct value of `keys` (aligned with `frame`'s rows), in key order; their paths."""
    folder = landing / pipeline
    scratch = landing / f".{pipeline}.partial"
    folder.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    written = []
    for key, rows in frame.groupby(keys, sort=True):
        partial = scratch / f"{key}.csv"
        rows.to_csv(partial, index=False, date_format="%Y-%m-%d %H:%M:%S")
        os.replace(partial, folder / f"{key}.csv")
        written.append(folder / f"{key}.csv")
    scratch.rmdir()
    return written


def land_months(
    frame: pd.DataFrame, time_column: str, landing: Path, pipeline: str, start: str | None, end: str | None
) -> list[Path]:
    """One CSV per month of `time_column` from `start` to `end` (YYYY-MM, both included; None: no
    bound), keyed by the month's first day."""
    month = frame[time_column].dt.strftime("%Y-%m")
    chosen = frame[(month >= (start or "0000")) & (month <= (end or "9999"))]
    return land_files(chosen, chosen[time_column].dt.strftime("%Y-%m-01"), landing, pipeline)
