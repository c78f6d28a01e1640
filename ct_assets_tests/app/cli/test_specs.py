"""`ct spec check`: the built-in spec and the example file-source spec pass, and the example loads
next to the built-in ones; a spec with problems fails with one message per problem; a folder
without a spec.yaml, a path that does not exist and a home with no spec at all are reported. Real
`ct` processes (and `ct` in this process) on real spec folders; the example's feature SQL runs on a
month of rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.spec_loading import discover_specs
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error
from ct_assets_tests.app.cli.test_errors import ct
from ct_assets_tests.conftest import FLIGHTS_SPEC

EXAMPLE = settings.REPO_ROOT / "examples" / "rain_ibk"


def test_every_loaded_spec_is_checked_by_default(run_ct: RunCt) -> None:
    spec = load_spec(FLIGHTS_SPEC)
    ran = run_ct("spec", "check")
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.splitlines() == [
        f"checked {settings.REPO_ROOT / 'pipelines'}",
        f"ok     flights_delay        demo source, daily from 2013-01-01, {len(spec.columns)} columns, "
        f"{len(spec.feature_columns)} features, ports 3700/3701/3702  ({FLIGHTS_SPEC.parent})",
    ]


def test_with_no_spec_folder_there_is_nothing_to_check(
    run_ct: RunCt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    ran = run_ct("spec", "check")
    assert (ran.code, ran.out, ran.err) == (1, "checked no folder\n", "no specs found\n")


def test_a_path_that_does_not_exist(run_ct: RunCt, tmp_path: Path) -> None:
    ran = run_ct("spec", "check", str(tmp_path / "missing"))
    assert one_line_error(ran) == f"error  {tmp_path / 'missing'}: no such spec file or folder"
    assert ran.code == 1 and ran.out == ""


def test_spec_without_an_action(run_ct: RunCt) -> None:
    ran = run_ct("spec")
    assert ran.code == 2
    assert one_line_error(ran) == "ct spec: the following arguments are required: action (see ct spec --help)"


def test_the_example_spec_passes(tmp_path: Path) -> None:
    done = ct(tmp_path, "spec", "check", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "ok     rain_ibk" in done.stdout and "monthly" in done.stdout


def test_the_example_loads_next_to_the_built_in_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_PIPELINES_DIR", str(EXAMPLE.parent))
    monkeypatch.delenv("CT_BUILTIN_PIPELINES", raising=False)
    examples = sorted(p.parent.name for p in EXAMPLE.parent.glob("*/spec.yaml"))
    assert [s.name for s in discover_specs()] == ["flights_delay", *examples]
    assert "rain_ibk" in examples
    done = ct(tmp_path, "spec", "check", CT_PIPELINES_DIR=str(EXAMPLE.parent))
    assert done.returncode == 0, done.stderr
    assert "flights_delay" in done.stdout and "rain_ibk" in done.stdout


def _broken_copy(folder: Path) -> Path:
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    raw = yaml.safe_load((folder / "spec.yaml").read_text())
    raw["gate"]["min_auc"] = 1.5
    raw["partitions"]["grain"] = "hourly"
    raw["label"]["sql"] = "features/missing.sql"
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    return folder


def test_a_spec_with_problems_fails_with_one_message_each(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    broken = _broken_copy(specs / "rain_broken")
    (specs / "notes").mkdir()  # a folder without a spec.yaml
    done = ct(tmp_path, "spec", "check", str(specs))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert any("key 'gate.min_auc'" in e and "less than or equal to 1" in e for e in errors), errors
    assert any("key 'partitions.grain'" in e and "'monthly'" in e for e in errors), errors
    assert any(f"{specs / 'notes'}: folder without a spec.yaml" in e for e in errors), errors
    assert all(str(broken / "spec.yaml") in e for e in errors if "key '" in e)
    assert "Traceback" not in done.stderr


def test_a_missing_sql_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "rain_sql"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    (folder / "features" / "label.sql").unlink()
    groups = sorted((folder / "features").glob("*.sql"))
    groups[0].unlink()
    done = ct(tmp_path, "spec", "check", str(folder / "spec.yaml"))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert any(
        "key 'label.sql': SQL file 'features/label.sql' does not exist beside the spec" in line
        for line in lines
    )
    group = f"SQL file 'features/{groups[0].name}' does not exist beside the spec"
    assert any(
        line.count("key '") == 1 and "key 'feature_groups." in line and group in line for line in lines
    )


def test_a_checked_spec_that_clashes_with_a_loaded_one(tmp_path: Path) -> None:
    folder = tmp_path / "rain_copy"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    done = ct(tmp_path, "spec", "check", str(folder), CT_PIPELINES_DIR=str(EXAMPLE.parent))
    assert done.returncode == 1
    assert "pipeline name 'rain_ibk' is also used by" in done.stderr


def test_the_example_features_on_a_month_of_rows() -> None:
    # The feature SQL as the engine runs it: over the validated rows of one partition.
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE validated AS SELECT '2000-01-0' || i AS day_id, "
        "TIMESTAMP '2000-01-01' + INTERVAL (i) DAY AS day_start, i * 0.5 AS rain, "
        + ", ".join(f"CASE WHEN {m} <= i THEN {m}.0 ELSE 0.0 END AS rainfc_{m}" for m in range(1, 12))
        + " FROM range(1, 4) t(i)"
    )
    rows = con.sql((EXAMPLE / "features" / "ensemble.sql").read_text()).fetchall()
    first = rows[0]  # one member of eleven forecasts 1 mm
    assert first[1] == pytest.approx(1 / 11) and first[3] == pytest.approx(1 / 11) and first[4] == 1.0
    assert first[5] == 2.0 and first[6] == "DJF"
    labels = con.sql((EXAMPLE / "features" / "label.sql").read_text()).fetchall()
    assert [wet for _, wet in labels] == [True, True, True]


def test_a_spec_that_is_not_yaml_is_one_line(run_ct: RunCt, tmp_path: Path) -> None:
    folder = tmp_path / "rain_yaml"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    spec = folder / "spec.yaml"
    lines = spec.read_text().splitlines()
    at = lines.index("name: rain_ibk")
    lines[at : at + 1] = ["name: [rain_ibk", "broken: true"]  # an unclosed list, then a key
    spec.write_text("\n".join(lines))
    ran = run_ct("spec", "check", str(folder))
    assert one_line_error(ran) == (
        f"error  {spec}: not valid YAML at line {at + 2}, column 7: expected ',' or ']', but got ':' "
        f"(while parsing a flow sequence from line {at + 1}, column 7)"
    )


def test_a_misspelled_column_in_feature_sql_fails_the_check(run_ct: RunCt, tmp_path: Path) -> None:
    folder = tmp_path / "rain_typo"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fetch.py", "__pycache__"))
    sql = folder / "features" / "ensemble.sql"
    sql.write_text(sql.read_text().replace("dayofyear(day_start)", "dayofyear(day_startt)"))
    ran = run_ct("spec", "check", str(folder))
    assert one_line_error(ran) == (
        f"error  {sql}: the SQL of feature group 'ensemble' fails: Binder Error: Referenced column "
        '"day_startt" not found in FROM clause! Candidate bindings: "day_start", "day_id"'
    )
    assert "ok" not in ran.out


def test_a_landing_file_that_no_partition_reads_is_a_warning(run_ct: RunCt, home: Path) -> None:
    folder = home / "landing" / "rain_ibk"
    folder.mkdir(parents=True)
    for name in ["2000-01-01.csv", "2000-02-15.csv", ".2000-03-01.csv.tmp"]:
        (folder / name).write_text("day_id\n")
    ran = run_ct("spec", "check", str(EXAMPLE))
    assert ran.code == 0
    assert "ok     rain_ibk" in ran.out
    assert ran.err.splitlines() == [
        f"warning {folder / '2000-02-15.csv'}: its rows are not ingested: 2000-02-15 is not the first "
        "of a month, and monthly partitions are keyed by it: rename it 2000-02-01 (the month it falls "
        "in) or 2000-03-01 (the next month)"
    ]
