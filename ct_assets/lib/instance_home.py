"""Preparing Dagster's home folder for the embedded default instance."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ct_assets.lib import settings


def prepare_dagster_home() -> Path:
    """Create `$DAGSTER_HOME` under the home folder with the project's dagster.yaml; export it."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    source = settings.REPO_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("CT_HOME", str(settings.ct_home()))
    return home
