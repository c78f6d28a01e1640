"""Settings: every location derives from CT_HOME unless its own variable overrides it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ct_assets.lib.core import settings

_OVERRIDES = ("CT_WAREHOUSE", "CT_LANDING", "DAGSTER_HOME", "CT_REGISTRY", "CT_PIPELINES_DIR")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CT_HOME", str(tmp_path / "home"))
    return (tmp_path / "home").resolve()


def test_every_location_lives_under_the_home(home: Path) -> None:
    assert settings.ct_home() == home
    assert settings.warehouse_path() == home / "warehouse.duckdb"
    assert settings.landing_root() == home / "landing"
    assert settings.dagster_home() == home / "dagster"
    assert settings.registry_root() == home / "registry"
    assert settings.config().online == home / "online"
    assert settings.config().prediction_log == home / "prediction_log"


def test_own_variables_override_the_home(home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CT_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("CT_LANDING", str(tmp_path / "in"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dg"))
    monkeypatch.setenv("CT_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "specs"))
    assert settings.warehouse_path() == tmp_path / "w.duckdb"
    assert settings.landing_root() == tmp_path / "in"
    assert settings.dagster_home() == tmp_path / "dg"
    assert settings.registry_root() == tmp_path / "reg"
    assert settings.config().pipeline_dirs[-1] == (tmp_path / "specs").resolve()
    assert settings.config().online == home / "online"  # no override of its own


def test_defaults_are_in_the_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CT_HOME", raising=False)
    monkeypatch.delenv("CT_PIPELINES_DIR", raising=False)
    assert settings.ct_home() == (settings.REPO_ROOT / ".ct_home").resolve()
    assert settings.config().pipeline_dirs == (settings.REPO_ROOT / "pipelines",)
    assert (settings.REPO_ROOT / "pyproject.toml").is_file()


def test_bentoml_home_goes_into_the_home_unless_set(home: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENTOML_HOME", raising=False)
    path = settings.use_bentoml_home()
    assert path == home / "bentoml" and path.is_dir()
    assert os.environ["BENTOML_HOME"] == str(path)


def test_a_set_bentoml_home_is_kept(home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "elsewhere"))
    assert settings.use_bentoml_home() == tmp_path / "elsewhere"
    assert (tmp_path / "elsewhere").is_dir()
