"""The backtest warehouse on a weekly file source: a second build reuses the partitions whose
landing files, spec data sections and SQL are as they were, and builds the others again."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.monitor import backtest
from ct_assets.lib.monitor.backtest_builds import describe
from ct_assets_tests.app.cli.test_history import KEYS, _pipeline

WEEKS = KEYS["weekly"][:3]


def _spec(tmp_path: Path) -> PipelineSpec:
    return load_spec(tmp_path / "pipelines" / "grains" / "spec.yaml")


def _counts(con, table: str) -> dict[str, int]:
    rows = con.execute(f"SELECT _partition_key, count(*) FROM grains.{table} GROUP BY 1").fetchall()
    return dict(rows)


def test_a_changed_file_or_sql_is_built_again_and_the_rest_reused(tmp_path: Path) -> None:
    _pipeline(tmp_path, "weekly", WEEKS)
    landing = tmp_path / "home" / "landing"
    con = open_connection(tmp_path / "warehouse.duckdb")
    try:
        built = backtest.build_features(con, _spec(tmp_path), landing, WEEKS)
        assert built == dict.fromkeys(WEEKS, "new")
        assert _counts(con, "raw") == dict.fromkeys(WEEKS, 150)
        ingested = con.execute("SELECT max(ingested_at) FROM grains.raw_tags").fetchone()[0]

        assert backtest.build_features(con, _spec(tmp_path), landing, WEEKS) == {}
        assert con.execute("SELECT max(ingested_at) FROM grains.raw_tags").fetchone()[0] == ingested

        first = landing / "grains" / f"{WEEKS[0]}.csv"
        rows = pd.read_csv(first)
        extra = rows.head(5).assign(reading_id=[f"extra-{i}" for i in range(5)])
        pd.concat([rows, extra]).to_csv(first, index=False)
        built = backtest.build_features(con, _spec(tmp_path), landing, WEEKS)
        assert built == {WEEKS[0]: "landing files changed"}
        assert _counts(con, "raw") == {WEEKS[0]: 155, WEEKS[1]: 150, WEEKS[2]: 150}
        assert _counts(con, "features")[WEEKS[0]] == 155

        sql = tmp_path / "pipelines" / "grains" / "sql" / "reading.sql"
        sql.write_text("SELECT reading_id, 0::DOUBLE AS level, site FROM validated")
        built = backtest.build_features(con, _spec(tmp_path), landing, WEEKS)
        assert built == dict.fromkeys(WEEKS, "spec or feature SQL changed")
        levels = con.execute("SELECT DISTINCT level FROM grains.features").fetchall()
        assert levels == [(0.0,)]
        assert describe(built, 4) == (
            "features: 3 of 4 partitions built (3 spec or feature SQL changed), 1 reused"
        )
    finally:
        con.close()


def test_a_change_outside_the_data_sections_reuses_every_partition(tmp_path: Path) -> None:
    _pipeline(tmp_path, "weekly", WEEKS)
    landing = tmp_path / "home" / "landing"
    con = open_connection(tmp_path / "warehouse.duckdb")
    try:
        backtest.build_features(con, _spec(tmp_path), landing, WEEKS)
        spec_file = tmp_path / "pipelines" / "grains" / "spec.yaml"
        spec_file.write_text(spec_file.read_text().replace("window_partitions: 5", "window_partitions: 4"))
        assert backtest.build_features(con, _spec(tmp_path), landing, WEEKS) == {}
        assert describe({}, 3) == "features: all 3 partitions reused from the backtest warehouse"
        spec_file.write_text(
            spec_file.read_text().replace("level: {type: float, nullable: false}", "level: {type: float}")
        )
        built = backtest.build_features(con, _spec(tmp_path), landing, WEEKS)
        assert built == dict.fromkeys(WEEKS, "spec or feature SQL changed")
    finally:
        con.close()
