"""whylogs profiles: prepared columns type the same way, chunked profiles merge to the whole, and
profiles round-trip through their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.data import profiles


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "carrier": rng.choice(["AA", "UA", None], rows),
            "distance": rng.integers(100, 3000, rows).astype(object),
        }
    )


def _counts(view) -> dict[str, int]:
    return {name: int(column.get_metric("counts").n.value) for name, column in view.get_columns().items()}


def test_prepare_types_categoricals_as_text_and_numerics_as_floats() -> None:
    frame = pd.DataFrame({"carrier": ["AA", None, 7], "distance": ["12", "far", None]})
    prepared = profiles.prepare(frame, ["carrier"], ["distance"])
    assert prepared["carrier"].tolist()[0] == "AA" and prepared["carrier"].tolist()[2] == "7"
    assert pd.isna(prepared["carrier"].tolist()[1])
    assert prepared["distance"].dtype == "float64"
    assert prepared["distance"].tolist()[0] == 12.0 and prepared["distance"].isna().sum() == 2


def test_profile_counts_every_row() -> None:
    view = profiles.profile(profiles.prepare(_frame(1000), ["carrier"], ["distance"]))
    assert _counts(view) == {"carrier": 1000, "distance": 1000}


def test_a_large_frame_profiled_in_chunks_across_processes_counts_every_row() -> None:
    rows = profiles.PARALLEL_FROM_ROWS + 1
    frame = profiles.prepare(_frame(rows), [], ["distance"])
    view = profiles.profile(frame, workers=2)
    assert _counts(view) == {"distance": rows}
    distribution = view.get_column("distance").get_metric("distribution")
    assert distribution.min == frame["distance"].min() and distribution.max == frame["distance"].max()


def test_merge_is_the_sum_and_needs_at_least_one_view() -> None:
    views = [profiles.profile(profiles.prepare(_frame(n, n), ["carrier"], [])) for n in (10, 20, 30)]
    assert _counts(profiles.merge(views)) == {"carrier": 60}
    with pytest.raises(ValueError, match="no profiles to merge"):
        profiles.merge([])


def test_profile_files_round_trip_and_window(tmp_path: Path) -> None:
    files = profiles.ProfileFiles(tmp_path, "flights")
    for day, rows in (("2013-01-01", 5), ("2013-01-02", 7)):
        files.write("features", day, profiles.profile(profiles.prepare(_frame(rows), [], ["distance"])))
    assert files.path("features", "2013-01-01") == tmp_path / "flights" / "features" / "2013-01-01.bin"
    assert files.exists("features", "2013-01-02") and not files.exists("features", "2013-01-03")
    assert _counts(files.read("features", "2013-01-02")) == {"distance": 7}
    assert _counts(files.window("features", ["2013-01-01", "2013-01-02"])) == {"distance": 12}
    assert sorted(p.name for p in (tmp_path / "flights" / "features").iterdir()) == [
        "2013-01-01.bin",
        "2013-01-02.bin",
    ]
    with pytest.raises(FileNotFoundError, match="no features profile for 2013-01-03"):
        files.read("features", "2013-01-03")
