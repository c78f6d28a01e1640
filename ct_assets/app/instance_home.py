"""Preparing Dagster's home folder: the embedded default instance, or another instance file
(`$CT_DAGSTER_YAML`, e.g. `dagster.postgres.yaml` for PostgreSQL storage)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ct_assets.lib.core import settings


def instance_yaml() -> Path:
    """The instance file to install: `$CT_DAGSTER_YAML` (a path, relative to the working folder or
    to the project root), else the project's embedded default `dagster.yaml`."""
    chosen = os.environ.get("CT_DAGSTER_YAML")
    if not chosen:
        return settings.REPO_ROOT / "dagster.yaml"
    path = Path(chosen).expanduser()
    candidates = (
        [path] if path.is_absolute() else list(dict.fromkeys([Path.cwd() / path, settings.REPO_ROOT / path]))
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"CT_DAGSTER_YAML={chosen}: no such file (looked at {', '.join(str(c) for c in candidates)})"
    )


def prepare_dagster_home() -> Path:
    """Create `$DAGSTER_HOME` under the home folder with the chosen instance file as its
    dagster.yaml; export it."""
    home = settings.config().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    source = instance_yaml()
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("CT_HOME", str(settings.config().home))
    return home
