"""Dagster's home folder prepared in a temporary home: which instance file is chosen
(`$CT_DAGSTER_YAML` or the embedded default), how a wrong choice is reported, and the chosen file
written into the exported DAGSTER_HOME only when its content changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ct_assets.app.instance_home import instance_yaml, prepare_dagster_home
from ct_assets.lib.core import settings

EMBEDDED_DEFAULT = settings.REPO_ROOT / "dagster.yaml"
POSTGRES_INSTANCE = settings.REPO_ROOT / "dagster.postgres.yaml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home folder; DAGSTER_HOME and CT_DAGSTER_YAML unset (restored after the test, as
    `prepare_dagster_home` exports DAGSTER_HOME)."""
    home = tmp_path / "home"
    monkeypatch.setenv("CT_HOME", str(home))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("CT_DAGSTER_YAML", raising=False)
    return home


def test_without_a_choice_the_embedded_default_is_installed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert instance_yaml() == EMBEDDED_DEFAULT
    monkeypatch.setenv("CT_DAGSTER_YAML", "")
    assert instance_yaml() == EMBEDDED_DEFAULT, "an empty value chooses nothing"


def test_a_chosen_file_is_found_by_absolute_path_from_the_working_folder_or_the_project_root(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = tmp_path / "work" / "mine.yaml"
    own.parent.mkdir()
    own.write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("CT_DAGSTER_YAML", str(own))
    assert instance_yaml() == own

    monkeypatch.chdir(own.parent)
    monkeypatch.setenv("CT_DAGSTER_YAML", "mine.yaml")
    assert instance_yaml() == own, "relative to the working folder"

    monkeypatch.setenv("CT_DAGSTER_YAML", "dagster.postgres.yaml")
    assert instance_yaml() == POSTGRES_INSTANCE, "relative to the project root"


def test_the_working_folder_wins_over_the_project_root_for_the_same_relative_name(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.postgres.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CT_DAGSTER_YAML", "dagster.postgres.yaml")
    assert instance_yaml() == tmp_path / "dagster.postgres.yaml"


def test_a_missing_choice_names_the_variable_and_every_place_looked_at(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CT_DAGSTER_YAML", "nowhere.yaml")
    with pytest.raises(FileNotFoundError) as raised:
        instance_yaml()
    message = str(raised.value)
    assert message.startswith("CT_DAGSTER_YAML=nowhere.yaml: no such file")
    assert str(tmp_path / "nowhere.yaml") in message
    assert str(settings.REPO_ROOT / "nowhere.yaml") in message

    monkeypatch.setenv("CT_DAGSTER_YAML", str(tmp_path / "absent.yaml"))
    with pytest.raises(FileNotFoundError, match=r"absent\.yaml: no such file"):
        instance_yaml()


def test_a_folder_is_not_an_instance_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_DAGSTER_YAML", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        instance_yaml()


def test_the_prepared_home_holds_the_default_instance_and_is_exported(home: Path) -> None:
    dagster_home = prepare_dagster_home()

    assert dagster_home == home.resolve() / "dagster"
    assert (dagster_home / "dagster.yaml").read_bytes() == EMBEDDED_DEFAULT.read_bytes()
    assert os.environ["DAGSTER_HOME"] == str(dagster_home)
    assert os.environ["CT_HOME"] == str(home)


def test_preparing_again_keeps_an_unchanged_file_and_replaces_a_changed_choice(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = prepare_dagster_home() / "dagster.yaml"
    earlier = installed.stat().st_mtime_ns
    os.utime(installed, ns=(earlier - 10**9, earlier - 10**9))  # an older stamp, to see a rewrite
    prepare_dagster_home()
    assert installed.stat().st_mtime_ns == earlier - 10**9, "the same content is not written again"

    own = tmp_path / "own.yaml"
    own.write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("CT_DAGSTER_YAML", str(own))
    prepare_dagster_home()
    assert installed.read_text() == own.read_text()


def test_an_explicit_dagster_home_is_used_as_it_is(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "instance"
    monkeypatch.setenv("DAGSTER_HOME", str(elsewhere))
    assert prepare_dagster_home() == elsewhere
    assert (elsewhere / "dagster.yaml").is_file()
    assert not (home / "dagster").exists()
