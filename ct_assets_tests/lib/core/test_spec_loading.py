"""Finding and checking specs: folders of spec folders, clashes of names and ports across specs
(each message names both files), and `check_specs` collecting every problem instead of the first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import SpecError, load_spec
from ct_assets.lib.core.spec_loading import (
    check_specs,
    clashes,
    folders_without_spec,
    load_specs,
    spec_files,
)

EXAMPLE = settings.REPO_ROOT / "examples" / "rain_ibk"


def _copy(folder: Path, **changes: object) -> Path:
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    raw = yaml.safe_load((folder / "spec.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = raw
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_spec_files_and_folders_without_a_spec(tmp_path: Path) -> None:
    _copy(tmp_path / "b_rain", name="b_rain")
    _copy(tmp_path / "a_rain", name="a_rain")
    (tmp_path / "notes").mkdir()
    (tmp_path / "_shared").mkdir()
    (tmp_path / ".cache").mkdir()
    assert spec_files(tmp_path) == [tmp_path / "a_rain" / "spec.yaml", tmp_path / "b_rain" / "spec.yaml"]
    assert folders_without_spec(tmp_path) == [tmp_path / "notes"]


def test_a_name_used_twice_is_a_clash_naming_both_files(tmp_path: Path) -> None:
    _copy(tmp_path / "one")
    _copy(tmp_path / "two")
    with pytest.raises(SpecError, match="pipeline name 'rain_ibk' is also used by") as err:
        load_specs([tmp_path])
    assert str(tmp_path / "one" / "spec.yaml") in str(err.value)
    assert str(tmp_path / "two" / "spec.yaml") in str(err.value)


def test_a_port_used_twice_is_a_clash_naming_both_keys(tmp_path: Path) -> None:
    _copy(tmp_path / "one", name="rain_one", serving__proxy_port=4500)
    _copy(tmp_path / "two", name="rain_two", serving__green_port=4500)
    specs = [load_spec(tmp_path / f / "spec.yaml") for f in ("one", "two")]
    problems = clashes(specs)
    assert len(problems) == 1
    assert "serving.green_port 4500 of 'rain_two' is also serving.proxy_port of 'rain_one'" in problems[0]


def test_unset_ports_are_allocated_and_do_not_clash_between_distinct_names(tmp_path: Path) -> None:
    _copy(tmp_path / "one", name="rain_one")
    _copy(tmp_path / "two", name="rain_two")
    one, two = load_specs([tmp_path])
    assert one.serving.proxy_port != two.serving.proxy_port
    assert clashes([one, two]) == []


def test_check_specs_reports_every_problem_of_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    monkeypatch.delenv("CT_PIPELINES_DIR", raising=False)
    _copy(tmp_path / "good", name="rain_good")
    _copy(tmp_path / "bad", name="rain_bad", gate__min_auc=2.0, training__seed="x")
    (tmp_path / "empty").mkdir()
    report = check_specs(tmp_path)
    assert [s.name for s in report.loaded] == ["rain_good"]
    assert not report.ok
    assert any(p.endswith("empty: folder without a spec.yaml") for p in report.problems)
    keyed = [p for p in report.problems if "key '" in p]
    assert any("gate.min_auc" in p for p in keyed) and any("training.seed" in p for p in keyed), keyed
    assert all(str(tmp_path / "bad" / "spec.yaml") in p for p in keyed)


def test_check_specs_names_a_path_that_does_not_exist(tmp_path: Path) -> None:
    report = check_specs(tmp_path / "nowhere")
    assert report.problems == [f"{tmp_path / 'nowhere'}: no such spec file or folder"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "name: x\ncolumns:\n  - a: [1, 2\n  b: 3\n",
            "not valid YAML at line 4, column 4: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence from line 3, column 8)",
        ),
        (
            "name: x\n\tlabel: y\n",
            "not valid YAML at line 2, column 1: found character '\\t' that cannot start any token "
            "(while scanning for the next token)",
        ),
        ("name: x\n label: y\n", "not valid YAML at line 2, column 7: mapping values are not allowed here"),
        (
            "name: \x07\n",
            "cannot read spec: unacceptable character #x0007: special characters are not allowed "
            'in "<unicode string>", position 6',
        ),
    ],
)
def test_check_specs_reports_unparseable_yaml_on_one_line(tmp_path: Path, text: str, problem: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    assert check_specs(spec).problems == [f"{spec}: {problem}"]
