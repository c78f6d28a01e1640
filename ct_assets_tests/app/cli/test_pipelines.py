"""Which pipelines `ct` and the code location load, and their serving ports: extra spec folders
are added to the built-in ones (a name or port clash names both specs), `CT_BUILTIN_PIPELINES=0`
leaves the built-in ones out, `--pipeline` defaults to the only pipeline loaded, and ports a spec
does not set are allocated from its name. Real `ct` processes on real spec folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ct_assets.lib.core import settings
from ct_assets.lib.core.ports import allocated_ports
from ct_assets.lib.core.spec import SpecError, load_spec
from ct_assets.lib.core.spec_loading import discover_specs
from ct_assets_tests.app.cli.test_errors import assert_one_line_error, ct
from ct_assets_tests.conftest import write_flights_variant

NO_PORTS = {"serving.proxy_port": None, "serving.blue_port": None, "serving.green_port": None}


def test_a_spec_without_ports_gets_a_block_from_its_name(tmp_path: Path) -> None:
    spec = load_spec(write_flights_variant(tmp_path / "delays_b", {"name": "delays_b", **NO_PORTS}))
    ports = (spec.serving.proxy_port, spec.serving.blue_port, spec.serving.green_port)
    assert ports == tuple(allocated_ports("delays_b").values())
    assert ports[0] >= 3800 and ports[2] == ports[0] + 2 <= 4099
    assert allocated_ports("delays_b") != allocated_ports("delays_c")


def test_extra_specs_are_added_to_the_built_in_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_flights_variant(tmp_path / "delays_b", {"name": "delays_b", **NO_PORTS})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    monkeypatch.delenv("CT_BUILTIN_PIPELINES", raising=False)
    assert [s.name for s in discover_specs()] == ["flights_delay", "delays_b"]
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    assert [s.name for s in discover_specs()] == ["delays_b"]


def test_a_name_clash_names_both_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_flights_variant(tmp_path / "flights_copy", NO_PORTS)  # still named flights_delay
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    monkeypatch.delenv("CT_BUILTIN_PIPELINES", raising=False)
    with pytest.raises(SpecError, match="pipeline name 'flights_delay' is also used by") as err:
        discover_specs()
    assert str(path) in str(err.value) and "pipelines/flights_delay/spec.yaml" in str(err.value)


def test_a_port_clash_names_both_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_flights_variant(tmp_path / "delays_b", {"name": "delays_b", "serving.green_port": 3999})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path))
    monkeypatch.delenv("CT_BUILTIN_PIPELINES", raising=False)
    with pytest.raises(
        SpecError,
        match=r"serving.proxy_port 3700 of 'delays_b' is also serving.proxy_port of 'flights_delay'",
    ):
        discover_specs()


def test_pipeline_is_required_only_when_more_than_one_is_loaded(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write_flights_variant(specs / "delays_b", {"name": "delays_b", **NO_PORTS})
    done = ct(tmp_path, "models", CT_PIPELINES_DIR=str(specs))
    assert_one_line_error(done, "more than one pipeline is loaded", "--pipeline", "flights_delay, delays_b")
    assert ct(tmp_path, "models", "--pipeline", "delays_b", CT_PIPELINES_DIR=str(specs)).returncode == 0
    alone = ct(tmp_path, "models", CT_PIPELINES_DIR=str(specs), CT_BUILTIN_PIPELINES="0")
    assert alone.returncode == 0, alone.stderr


def test_land_picks_the_only_demo_pipeline(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write_flights_variant(specs / "delays_b", {"name": "delays_b", "source.kind": "files", **NO_PORTS})
    done = ct(tmp_path, "land", "--start", "2013-01-01", "--end", "2013-01-01", CT_PIPELINES_DIR=str(specs))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "landing" / "flights_delay" / "2013-01-01.csv").is_file()


def test_the_service_serves_the_pipeline_whose_spec_its_bento_carries(tmp_path: Path) -> None:
    # A bento's layout: service.py with the pipeline's spec beside it, no model tag file.
    bento = tmp_path / "bento"
    write_flights_variant(bento / "pipeline", {"name": "delays_b", **NO_PORTS})
    shutil.copyfile(settings.REPO_ROOT / "bentos" / "service.py", bento / "service.py")
    code = (
        "import importlib.util as u, sys\n"
        f"s = u.spec_from_file_location('service', {str(bento / 'service.py')!r})\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.MODEL_TAG)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "BENTOML_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "BENTOML_HOME": str(tmp_path / "bentoml")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "delays_b:latest"
