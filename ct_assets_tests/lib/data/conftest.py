"""Fixtures of the data-layer tests: real flights from the demo's first landing file, as text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec

DAY = "2013-01-01"


@pytest.fixture
def sample(flights_landing: Path, flights_spec: PipelineSpec) -> pd.DataFrame:
    """The first 40 flights of 2013-01-01, as text exactly as landed."""
    path = flights_landing / flights_spec.name / f"{DAY}.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False).head(40)


def land(
    tmp_path: Path,
    spec: PipelineSpec,
    frame: pd.DataFrame | None = None,
    text: str | None = None,
    name: str = f"{DAY}.csv",
) -> Path:
    """Write `frame` (or `text`) as a landing file of the day; returns the landing root."""
    folder = tmp_path / "landing" / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if text is not None:
        path.write_text(text)
    elif frame is not None:
        frame.to_csv(path, index=False)
    return tmp_path / "landing"
