"""`ct backtest` and `ct replay` on a user's file source at weekly and monthly grain: landed files,
the library's data steps, real CatBoost, and the JSON summary as the last stdout line; the range of
partitions and the policies are checked before anything is read or run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct_assets.cli import main
from ct_assets.lib.core.spec_loading import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.monitor.backtest import partition_keys
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error

SPEC = """
name: grains
description: Does a reading cross its limit?
owner: tests@example.com
source: {kind: files}
partitions: {grain: GRAIN, start: START, timezone: UTC}
timestamp_column: read_at
entity_id: reading_id
label: {column: crossed, sql: sql/label.sql}
columns:
  reading_id: {type: string, nullable: false}
  read_at: {type: timestamp, nullable: false}
  level: {type: float, nullable: false}
  site: {type: string, nullable: false}
  outcome: {type: float}
post_event_columns: [outcome]
feature_groups:
  reading:
    sql: sql/reading.sql
    columns:
      level: {kind: numeric}
      site: {kind: categorical}
training:
  window_partitions: 5
  validation_partitions: 1
  holdout_partitions: 1
  min_rows: 100
  params: {iterations: 40, depth: 3, early_stopping_rounds: 10, thread_count: 1}
monitoring: {min_rows: 50}
"""
KEYS = {
    "weekly": [
        "2024-01-07",
        "2024-01-14",
        "2024-01-21",
        "2024-01-28",
        "2024-02-04",
        "2024-02-11",
        "2024-02-18",
    ],
    "monthly": [
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
        "2024-04-01",
        "2024-05-01",
        "2024-06-01",
        "2024-07-01",
    ],
}


def _readings(key: str, days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = 150
    start = pd.Timestamp(key, tz="UTC")
    level = rng.normal(0, 1, rows)
    return pd.DataFrame(
        {
            "reading_id": [f"{key}-{i}" for i in range(rows)],
            "read_at": [
                (start + pd.Timedelta(hours=int(h))).isoformat() for h in rng.integers(0, 24 * days, rows)
            ],
            "level": level.round(3),
            "site": rng.choice(["a", "b", "c"], rows),
            "outcome": (level + rng.normal(0, 1, rows) + 0.1 * seed).round(3),
        }
    )


def _pipeline(tmp_path: Path, grain: str, land: list[str]) -> dict[str, str]:
    folder = tmp_path / "pipelines" / "grains"
    (folder / "sql").mkdir(parents=True)
    spec = SPEC.replace("GRAIN", grain).replace("START", KEYS[grain][0])
    (folder / "spec.yaml").write_text(spec)
    (folder / "sql" / "reading.sql").write_text("SELECT reading_id, level, site FROM validated")
    (folder / "sql" / "label.sql").write_text("SELECT reading_id, outcome > 0.5 AS crossed FROM validated")
    landing = tmp_path / "home" / "landing" / "grains"
    landing.mkdir(parents=True)
    for index, key in enumerate(land):
        _readings(key, 7 if grain == "weekly" else 28, index).to_csv(landing / f"{key}.csv", index=False)
    return {
        "CT_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "CT_PIPELINES_DIR": str(tmp_path / "pipelines"),
        "CT_BUILTIN_PIPELINES": "0",
    }


def test_partition_keys_follow_the_grain(tmp_path: Path) -> None:
    folder = tmp_path / "grains"
    (folder / "sql").mkdir(parents=True)
    (folder / "sql" / "reading.sql").write_text("SELECT reading_id, level, site FROM validated")
    (folder / "sql" / "label.sql").write_text("SELECT reading_id, TRUE AS crossed FROM validated")
    cases = {  # grain: (spec start, first asked for, keys): weeks keyed by Sunday, months by the 1st
        "weekly": ("2024-01-07", "2024-01-01", [*KEYS["weekly"], "2024-02-25"]),
        "monthly": ("2024-02-01", "2024-01-01", ["2024-02-01", "2024-03-01"]),
        "daily": ("2024-01-03", "2024-02-28", ["2024-02-28", "2024-02-29", "2024-03-01"]),
    }
    for grain, (start, first, keys) in cases.items():
        (folder / "spec.yaml").write_text(SPEC.replace("GRAIN", grain).replace("START", start))
        assert partition_keys(load_spec(folder / "spec.yaml").partitions, first, "2024-03-01") == keys


@pytest.mark.parametrize("grain", ["weekly", "monthly"])
def test_backtest_json_on_a_file_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], grain: str
) -> None:
    for name, value in _pipeline(tmp_path, grain, KEYS[grain]).items():
        monkeypatch.setenv(name, value)
    code = main(["backtest", "--pipeline", "grains", "--json", "--policies", "static,periodic,triggered"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["pipeline"] == "grains" and list(summary["policies"]) == [
        "static",
        "periodic",
        "triggered",
    ]
    for figures in summary["policies"].values():
        assert {"mean_auc", "retrains", "cpu_s", "mean_ece"} <= set(figures)
        assert 0.5 < figures["mean_auc"] <= 1 and 0 <= figures["mean_ece"] < 0.5
        assert figures["partitions"] == 2  # 7 partitions, the first model as of the 5th
    assert summary["policies"]["static"]["retrains"] == 0
    assert summary["policies"]["periodic"]["retrains"] == 1  # after the 6th; none after the last
    report = tmp_path / "home" / "reports" / f"backtest_grains_{KEYS[grain][0]}_{KEYS[grain][-1]}.csv"
    assert report.read_text().splitlines()[1].startswith("static,")


def test_backtest_names_the_partitions_that_have_not_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = KEYS["monthly"]
    for name, value in _pipeline(tmp_path, "monthly", keys[:3] + keys[4:]).items():
        monkeypatch.setenv(name, value)
    code = main(["backtest", "--pipeline", "grains", "--json"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 7 partitions of grains have no landing file" in err and err.strip().endswith("2024-04-01")


@pytest.fixture
def grains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Callable[[str, list[str]], Path]:
    """`grains(grain, keys)`: the grains pipeline alone, with files landed for `keys`; returns its
    landing folder."""

    def make(grain: str, land: list[str]) -> Path:
        for name, value in _pipeline(tmp_path, grain, land).items():
            monkeypatch.setenv(name, value)
        return home / "landing" / "grains"

    return make


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_a_file_source_with_nothing_landed_needs_an_end(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], command: str
) -> None:
    grains("weekly", [])
    ran = run_ct(command, "--pipeline", "grains")
    assert one_line_error(ran) == "ct: --end is needed: grains's partitions have no end"


def test_a_range_in_which_no_partition_starts(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path]
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct("replay", "--pipeline", "grains", "--start", "2024-01-08", "--end", "2024-01-13")
    assert one_line_error(ran) == "ct: no weekly partition of grains starts between 2024-01-08 and 2024-01-13"


def test_a_range_that_ends_before_it_starts(run_ct: RunCt, grains: Callable[[str, list[str]], Path]) -> None:
    grains("monthly", KEYS["monthly"])
    ran = run_ct("backtest", "--pipeline", "grains", "--start", "2024-03-01", "--end", "2024-01-01")
    assert one_line_error(ran) == "ct: --end 2024-01-01 is before --start 2024-03-01"


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_a_start_after_the_last_landed_partition(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], command: str
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct(command, "--pipeline", "grains", "--start", "2024-02-19")
    assert (
        one_line_error(ran)
        == "ct: --start 2024-02-19 is after the last landed partition of grains, 2024-02-18"
    )


@pytest.mark.parametrize("command", ["replay", "backtest"])
def test_misnamed_landing_files_do_not_move_the_default_end(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], command: str
) -> None:
    """A Tuesday and a note beside the Sunday files: the range still ends at the last Sunday."""
    landing = grains("weekly", KEYS["weekly"])
    for name in ("2024-03-05.csv", "notes.csv"):
        (landing / name).write_text("reading_id\n")
    ran = run_ct(command, "--pipeline", "grains", "--start", "2024-02-19")
    assert (
        one_line_error(ran)
        == "ct: --start 2024-02-19 is after the last landed partition of grains, 2024-02-18"
    )


def test_a_start_after_the_last_partition_of_the_spec(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], tmp_path: Path
) -> None:
    grains("weekly", KEYS["weekly"])
    spec = tmp_path / "pipelines" / "grains" / "spec.yaml"
    spec.write_text(spec.read_text().replace("timezone: UTC}", "timezone: UTC, end: 2024-02-21}"))
    for start in ("2024-02-19", "2024-03-01"):  # the spec's end is exclusive: its last week starts 02-18
        ran = run_ct("backtest", "--pipeline", "grains", "--start", start)
        assert one_line_error(ran) == f"ct: --start {start} is after the last partition of grains, 2024-02-18"


def test_replay_names_the_partitions_that_have_not_landed(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], home: Path
) -> None:
    landing = grains("monthly", KEYS["monthly"][:1])
    ran = run_ct("replay", "--pipeline", "grains", "--end", "2024-07-01")
    assert one_line_error(ran) == (
        f"ct: 6 of 7 partitions of grains have no landing file under {landing}: "
        "2024-02-01, 2024-03-01, 2024-04-01, 2024-05-01, 2024-06-01 and 1 more"
    )
    assert not (home / "reports").exists() and not (home / "warehouse.duckdb").exists()


def test_backtest_with_an_unknown_policy(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], home: Path
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct("backtest", "--pipeline", "grains", "--policies", "static,nightly")
    assert (
        one_line_error(ran)
        == "ct: unknown policies ['nightly']; choose from static, periodic, scheduled, triggered"
    )
    assert not (home / "backtest").exists()


def test_backtest_needs_more_partitions_than_the_training_window(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], home: Path
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct("backtest", "--pipeline", "grains", "--end", "2024-02-04")
    assert one_line_error(ran) == "ct: 5 partitions: a backtest needs more than the training window (5)"
    assert not (home / "backtest").exists()


def test_backtest_of_one_partition(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], home: Path
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct("backtest", "--pipeline", "grains", "--start", "2024-02-18")
    assert one_line_error(ran) == "ct: 1 partition: a backtest needs more than the training window (5)"


def test_a_second_backtest_builds_what_changed_and_says_so(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path], home: Path, tmp_path: Path
) -> None:
    """Five rows added to one week's file and a feature SQL changed between two runs: the second
    run's warehouse holds the new rows and the new feature values, and its line says why."""
    landing = grains("weekly", KEYS["weekly"])
    command = ("backtest", "--pipeline", "grains", "--policies", "static", "--json")
    first = run_ct(*command)
    assert first.code == 0 and "features: 7 of 7 partitions built (7 new), 0 reused" in first.err
    again = run_ct(*command)
    assert "features: all 7 partitions reused from the backtest warehouse" in again.err
    assert json.loads(again.out.splitlines()[-1]) == json.loads(first.out.splitlines()[-1])

    week = landing / f"{KEYS['weekly'][1]}.csv"
    rows = pd.read_csv(week)
    extra = rows.head(5).assign(reading_id=[f"extra-{i}" for i in range(5)])
    pd.concat([rows, extra]).to_csv(week, index=False)
    changed = run_ct(*command)
    assert "features: 1 of 7 partitions built (1 landing files changed), 6 reused" in changed.err

    sql = tmp_path / "pipelines" / "grains" / "sql" / "reading.sql"
    sql.write_text("SELECT reading_id, 0::DOUBLE AS level, site FROM validated")
    changed = run_ct(*command)
    assert "features: 7 of 7 partitions built (7 spec or feature SQL changed), 0 reused" in changed.err
    assert json.loads(changed.out.splitlines()[-1]) != json.loads(first.out.splitlines()[-1])
    con = open_connection(home / "backtest" / "grains" / "warehouse.duckdb", read_only=True)
    try:
        raw = con.execute(
            "SELECT count(*) FROM grains.raw WHERE _partition_key = ?", [KEYS["weekly"][1]]
        ).fetchone()
        assert raw == (155,)
        assert con.execute("SELECT DISTINCT level FROM grains.features").fetchall() == [(0.0,)]
    finally:
        con.close()


def test_a_start_and_end_that_are_not_partition_keys_are_named_with_the_keys_used(
    run_ct: RunCt, grains: Callable[[str, list[str]], Path]
) -> None:
    grains("weekly", KEYS["weekly"])
    ran = run_ct(
        "backtest",
        "--pipeline",
        "grains",
        "--start",
        "2024-01-03",
        "--end",
        "2024-02-21",
        "--policies",
        "static",
    )
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert "--start 2024-01-03 is not a partition key; backtesting from 2024-01-07" in lines
    assert "--end 2024-02-21 is not a partition key; backtesting up to 2024-02-18" in lines
    keys = run_ct(
        "backtest", "--pipeline", "grains", "--start", "2024-01-07", "--policies", "static", "--json"
    )
    assert "not a partition key" not in keys.out + keys.err


def test_backtest_help_names_the_policies(run_ct: RunCt) -> None:
    ran = run_ct("backtest", "--help")
    assert ran.code == 0
    assert (
        "--policies POLICIES retraining policies to compare, comma-separated: "
        "any of static, periodic, scheduled, triggered (default: all of them)"
    ) in " ".join(ran.out.split())


@pytest.mark.slow
def test_replay_walks_a_monthly_file_source_through_the_asset_graph(tmp_path: Path) -> None:
    """`ct replay` on landed monthly files: each month ingested through Dagster, the first
    champion trained as soon as the window allows, the table written per month."""
    import csv
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env |= _pipeline(tmp_path, "monthly", KEYS["monthly"])
    ct = str(Path(sys.executable).parent / "ct")
    result = subprocess.run(
        [ct, "replay", "--pipeline", "grains", "--end", "2024-05-15"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "--end 2024-05-15 is not a partition key; replaying up to 2024-05-01\n" in result.stdout
    table = tmp_path / "home" / "reports" / "replay_grains_2024-01-01_2024-05-01.csv"
    rows = list(csv.DictReader(table.open()))
    assert [r["partition"] for r in rows] == KEYS["monthly"][:5]
    assert all(int(r["rows"]) == 150 for r in rows)
    assert rows[2]["retrained"] == "True"  # three months: one to train, one to validate, one to judge
    # the month that bootstraps is scored by no champion; the refit of v0001 it promoted serves after
    assert (rows[2]["champion"], rows[2]["champion_auc"], rows[2]["note"]) == ("-", "", "promoted v0002")
    assert rows[3]["champion"] == "v0002" and rows[3]["champion_auc"] and rows[3]["note"] == ""
    assert rows[-1]["champion"] == "v0002" and rows[-1]["champion_auc"]
    table_rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    bootstrap = next(line for line in table_rows if KEYS["monthly"][2] in line)
    assert [cell.strip() for cell in bootstrap.split("│")[4:9]] == ["-", "-", "yes", "yes", "promoted v0002"]
