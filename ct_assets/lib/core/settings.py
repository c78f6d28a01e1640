"""Where ct-assets keeps its files: one home folder, and the folder of pipeline specs.

Everything the embedded default writes (Dagster storage, the DuckDB warehouse, landing files)
lives under `CT_HOME`, so one folder is the whole state of a deployment. `Config` is that layout,
read from the environment once: the resources and the drivers take their paths from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]


def ct_home() -> Path:
    """The home folder: `$CT_HOME`, else `.ct_home/` in the project root."""
    return Path(os.environ.get("CT_HOME") or REPO_ROOT / ".ct_home").resolve()


def builtin_pipelines_dir() -> Path:
    """The project's own pipeline specs (the flights demo): `pipelines/`."""
    return REPO_ROOT / "pipelines"


def extra_pipeline_dirs() -> list[Path]:
    """`$CT_PIPELINES_DIR`: folders of spec folders (separated by `:`), added to the built-in ones."""
    value = os.environ.get("CT_PIPELINES_DIR") or ""
    return [Path(part).expanduser().resolve() for part in value.split(os.pathsep) if part]


def pipeline_dirs() -> list[Path]:
    """Every folder of spec folders the code location loads: the built-in `pipelines/` (unless
    `CT_BUILTIN_PIPELINES=0`), then those of `$CT_PIPELINES_DIR`."""
    builtin = [] if os.environ.get("CT_BUILTIN_PIPELINES", "1") == "0" else [builtin_pipelines_dir()]
    return list(dict.fromkeys([*builtin, *extra_pipeline_dirs()]))


def warehouse_path() -> Path:
    """The DuckDB file: `$CT_WAREHOUSE`, else `warehouse.duckdb` in the home folder."""
    return Path(os.environ.get("CT_WAREHOUSE") or ct_home() / "warehouse.duckdb")


def landing_root() -> Path:
    """Where landing files arrive: `$CT_LANDING`, else `landing/` in the home folder."""
    return Path(os.environ.get("CT_LANDING") or ct_home() / "landing")


def dagster_home() -> Path:
    """Dagster's instance folder: `$DAGSTER_HOME`, else `dagster/` in the home folder."""
    return Path(os.environ.get("DAGSTER_HOME") or ct_home() / "dagster")


def registry_root() -> Path:
    """The model registry: `$CT_REGISTRY`, else `registry/` in the home folder."""
    return Path(os.environ.get("CT_REGISTRY") or ct_home() / "registry")


def bentoml_home() -> Path:
    """BentoML's model and bento stores: `$BENTOML_HOME`, else `bentoml/` in the home folder."""
    return Path(os.environ.get("BENTOML_HOME") or ct_home() / "bentoml")


def use_bentoml_home(path: Path | None = None) -> Path:
    """Point BentoML's model and bento stores at `path` (a `Config.bentoml_home`; default: the
    environment's) unless BENTOML_HOME is already set: BentoML reads that variable, once."""
    path = Path(os.environ.setdefault("BENTOML_HOME", str(path or bentoml_home())))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Config:
    """Every folder and file of a deployment, derived from `CT_HOME` and its overrides."""

    home: Path
    pipeline_dirs: tuple[Path, ...]  # the folders of spec folders the code location loads
    warehouse: Path
    landing: Path
    registry: Path
    dagster_home: Path
    bentoml_home: Path

    @classmethod
    def from_env(cls) -> Config:
        return cls(
            home=ct_home(),
            pipeline_dirs=tuple(pipeline_dirs()),
            warehouse=warehouse_path(),
            landing=landing_root(),
            registry=registry_root(),
            dagster_home=dagster_home(),
            bentoml_home=bentoml_home(),
        )

    @classmethod
    def under(cls, home: Path, **overrides: Any) -> Config:
        """Every location in its default place under `home` (no environment read), but `overrides`."""
        home = Path(home)
        defaults = {
            "home": home,
            "pipeline_dirs": (builtin_pipelines_dir(),),
            "warehouse": home / "warehouse.duckdb",
            "landing": home / "landing",
            "registry": home / "registry",
            "dagster_home": home / "dagster",
            "bentoml_home": home / "bentoml",
        }
        return cls(**{**defaults, **overrides})

    @property
    def profiles(self) -> Path:
        return self.home / "profiles"

    @property
    def online(self) -> Path:
        """Published online snapshots: `online/<pipeline>/`."""
        return self.home / "online"

    @property
    def prediction_log(self) -> Path:
        """Prediction logs appended by serving: `prediction_log/<pipeline>/<date>/`."""
        return self.home / "prediction_log"

    @property
    def alerts_file(self) -> Path:
        """Alerts of the embedded sink (and the serving watchdog's), one JSON object a line."""
        return self.home / "alerts.jsonl"

    @property
    def audit_home(self) -> Path:
        """The folder of the shared audit log (`audit.jsonl`): the home folder."""
        return self.home

    @property
    def deploy(self) -> Path:
        """Each pipeline's serving slots, proxy and compatibility sets: `deploy/<pipeline>/`."""
        return self.home / "deploy"

    @property
    def reports(self) -> Path:
        return self.home / "reports"


def config() -> Config:
    """The configuration of the environment as it is now."""
    return Config.from_env()
