"""What every `ct` command shares, through the commands that use it on a fresh home: which pipeline
a command is about (and of which source kind), the Dagster home `ct` prepares before any command,
and the refusal of a port something already listens on."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ct_assets.app.cli.common import CliError, require_free_port
from ct_assets.lib.core import settings
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error
from ct_assets_tests.conftest import write_flights_variant

NO_PORTS = {"serving.proxy_port": None, "serving.blue_port": None, "serving.green_port": None}
BUILT_IN = settings.REPO_ROOT / "pipelines"
LAND_ONE_DAY = ("land", "--start", "2013-01-01", "--end", "2013-01-01")


def _add_pipeline(specs: Path, name: str, source: str) -> None:
    write_flights_variant(specs / name, {"name": name, "source.kind": source, **NO_PORTS})


def test_with_no_pipeline_loaded_a_command_says_where_it_looked(
    run_ct: RunCt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    assert one_line_error(run_ct("models")) == "ct: no pipeline in no folder (CT_BUILTIN_PIPELINES=0)"
    (tmp_path / "specs").mkdir()
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "specs"))
    assert one_line_error(run_ct("models")) == f"ct: no pipeline in {tmp_path / 'specs'}"


def test_land_needs_a_demo_source_pipeline(
    run_ct: RunCt, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = tmp_path / "specs"
    _add_pipeline(specs, "files_b", "files")
    monkeypatch.setenv("CT_PIPELINES_DIR", str(specs))
    named = run_ct(*LAND_ONE_DAY, "--pipeline", "files_b")
    assert one_line_error(named) == (
        f"ct: no demo-source pipeline 'files_b' in {BUILT_IN}, {specs} (have: flights_delay)"
    )
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    assert one_line_error(run_ct(*LAND_ONE_DAY, "--pipeline", "files_b")) == (
        f"ct: no demo-source pipeline 'files_b' in {specs} (have: none)"
    )
    assert one_line_error(run_ct(*LAND_ONE_DAY)) == f"ct: no demo-source pipeline in {specs}"
    assert not (home / "landing").exists()


def test_two_demo_source_pipelines_need_pipeline(
    run_ct: RunCt, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _add_pipeline(tmp_path / "specs", "delays_b", "demo")
    _add_pipeline(tmp_path / "specs", "files_c", "files")
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "specs"))
    ran = run_ct(*LAND_ONE_DAY)
    assert one_line_error(ran) == (
        "ct: more than one demo-source pipeline is loaded: "
        "choose one with --pipeline (flights_delay, delays_b)"
    )
    assert ran.code == 1
    assert not (home / "landing").exists()


def test_every_command_prepares_the_dagster_home(
    run_ct: RunCt, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME")  # by default the Dagster home is in the home folder
    instance_file = home / "dagster" / "dagster.yaml"
    assert run_ct("models").code == 0
    assert instance_file.read_bytes() == (settings.REPO_ROOT / "dagster.yaml").read_bytes()
    assert os.environ["DAGSTER_HOME"] == str(home / "dagster")  # for the bare `dagster` CLI afterwards
    instance_file.write_text("storage: {}\n")  # an instance file the project has since changed
    assert run_ct("models").code == 0
    assert instance_file.read_bytes() == (settings.REPO_ROOT / "dagster.yaml").read_bytes()


def test_the_instance_file_is_chosen_with_ct_dagster_yaml(
    run_ct: RunCt, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_DAGSTER_YAML", "dagster.postgres.yaml")  # relative: found in the project
    assert run_ct("models").code == 0
    chosen = (settings.REPO_ROOT / "dagster.postgres.yaml").read_bytes()
    assert (home / "dagster" / "dagster.yaml").read_bytes() == chosen


def test_a_dagster_home_that_cannot_be_made(
    run_ct: RunCt, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DAGSTER_HOME", str(blocker / "dagster"))
    ran = run_ct("models")
    assert ran.code == 1
    assert one_line_error(ran).startswith(
        f"ct: cannot prepare the Dagster home {blocker / 'dagster'}: [Errno 20] Not a directory"
    )
    assert not home.exists()  # the command did not run


def test_a_port_something_listens_on_is_refused() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(CliError) as refused:
            require_free_port(port, "the Dagster UI")
        assert str(refused.value) == (
            f"port {port} is already in use (Address already in use): the Dagster UI not started; "
            "stop what listens there or choose another with --port"
        )
        assert refused.value.code == 1
    require_free_port(port, "the Dagster UI")  # free again once the listener has closed
