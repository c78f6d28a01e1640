"""The command line as a user runs it: the demo, and a backfill of a partition range with
`dagster asset materialize` on a persistent instance (subprocesses, real files)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from ct_assets.lib.core import settings

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    return {**env, "CT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, env=env, cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_backfill_of_three_partitions_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's backfill command, run as written on three partitions."""
    env = _env(tmp_path / "home")
    (tmp_path / "home" / "dagster").mkdir(parents=True)
    (tmp_path / "home" / "dagster" / "dagster.yaml").write_text(
        (settings.REPO_ROOT / "dagster.yaml").read_text()
    )
    _run([str(BIN / "ct"), "land", "--start", "2013-01-01", "--end", "2013-01-03"], env)
    _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "ct_assets.definitions",
            "--select",
            "flights_delay/context_weather,flights_delay/context_planes",
        ],
        env,
    )
    _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "ct_assets.definitions",
            "--select",
            "tag:ct/stage=ingest and group:flights_delay",
            "--partition-range",
            "2013-01-01...2013-01-03",
        ],
        env,
    )
    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as con:
        counts = con.execute(
            "SELECT _partition_key, count(*) FROM flights_delay.features GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert counts == [("2013-01-01", 842), ("2013-01-02", 943), ("2013-01-03", 914)]
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        key = dg.AssetKey(["flights_delay", "features"])
        materialized = instance.get_materialized_partitions(key)
        assert materialized == {"2013-01-01", "2013-01-02", "2013-01-03"}


def test_demo_runs_the_graph_and_prints_counts(tmp_path: Path) -> None:
    result = _run([str(BIN / "ct"), "demo", "--offline", "--days", "2", "--no-ui"], _env(tmp_path / "home"))
    assert "2013-01-01" in result.stdout and "842" in result.stdout and "943" in result.stdout
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()
    with duckdb.connect(str(tmp_path / "home" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM flights_delay.features").fetchone()[0] == 842 + 943


def test_replay_prints_a_table_and_writes_csv_and_plot(tmp_path: Path) -> None:
    """`ct replay` walks days through the real graph and bootstraps a first champion attempt."""
    home = tmp_path / "home"
    result = _run([str(BIN / "ct"), "replay", "--start", "2013-01-01", "--end", "2013-01-09"], _env(home))
    assert "champion AUC" in result.stdout and "2013-01-09" in result.stdout
    report = home / "reports" / "replay_flights_delay_2013-01-01_2013-01-09.csv"
    rows = report.read_text().splitlines()
    assert rows[0] == "partition,rows,quarantined,champion,champion_auc,retrained,promoted,note"
    assert len(rows) == 10
    # A try that could not train (too few rows) is no retrain, but its note says why.
    table = list(csv.DictReader(rows))
    tries = [r for r in table if r["retrained"] == "True" or r["note"].startswith("training failed: ")]
    assert tries and tries[0]["partition"] == "2013-01-07"  # 7 partitions: train, 3 valid, 3 holdout
    assert all(r["retrained"] == "False" for r in tries if r["note"].startswith("training failed: "))
    assert report.with_suffix(".png").stat().st_size > 10_000
    models = _run([str(BIN / "ct"), "models"], _env(home)).stdout
    assert "v0001" in models


def test_backtest_compares_policies_over_a_few_weeks(tmp_path: Path) -> None:
    """The CI-sized backtest: the full year is a benchmark (README), a few weeks run here."""
    home = tmp_path / "home"
    result = _run(
        [
            str(BIN / "ct"),
            "backtest",
            "--start",
            "2013-01-01",
            "--end",
            "2013-02-21",
            "--policies",
            "static,scheduled,triggered",
            "--json",
        ],
        _env(home),
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(summary["policies"]) == ["static", "scheduled", "triggered"]
    assert summary["policies"]["static"]["retrains"] == 0
    daily = (home / "reports" / "backtest_flights_delay_2013-01-01_2013-02-21.csv").read_text().splitlines()
    assert daily[0] == "policy,partition,rows,auc,log_loss,ece,label_rate,mean_score,model_trained_on"
    assert len(daily) == 1 + 3 * 10  # first model on 2013-02-11, then 10 scored days per policy
    assert sum(1 for line in daily if line.startswith("static,") and line.endswith(",2013-02-11")) == 10
    assert (home / "reports" / "backtest_flights_delay_2013-01-01_2013-02-21.png").stat().st_size > 10_000
