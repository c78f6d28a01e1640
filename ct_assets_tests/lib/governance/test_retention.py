"""Retention on a real warehouse and landing folder: partitions past retention lose their landing
files and raw/quarantine rows, a partition the champion was trained on is kept, old prediction-log
day folders go, and every deletion is in the audit log with counts and sha256."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.landing import partition_files, sha256_of
from ct_assets.lib.governance import retention
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.deployment_state import DeployState
from ct_assets_tests.conftest import FIRST_DAYS, trained_model, write_flights_variant


def _count(con: duckdb.DuckDBPyConnection, table: str, key: str) -> int:
    return con.execute(
        f"SELECT count(*) FROM flights_delay.{table} WHERE _partition_key = ?", [key]
    ).fetchall()[0][0]


@pytest.fixture
def home(tmp_path: Path, flights_landing: Path) -> dict:
    spec = load_spec(
        write_flights_variant(
            tmp_path / "pipelines" / "flights_delay",
            {"retention": {"raw_days": 1, "prediction_log_days": 30, "measure_from": "latest_partition"}},
        )
    )
    landing = tmp_path / "landing"
    shutil.copytree(flights_landing / "flights_delay", landing / "flights_delay")
    con = open_connection(tmp_path / "warehouse.duckdb")
    for day in FIRST_DAYS:
        data_steps.ingest_raw(con, spec, day, partition_files(landing, spec.name, day))
        data_steps.validate_partition(con, spec, day)
    registry = Registry(tmp_path / "registry", spec.name)
    version = registry.register(
        trained_model(model_sha256="x", partitions={"train": [FIRST_DAYS[1]], "holdout": []})
    )
    registry.update(version, verdict={"passed": True, "reasons": []})
    registry.promote(version, who="ann", why="first model")
    logs = tmp_path / "prediction_log" / spec.name
    today = datetime.now(UTC).date()
    for day in (today - timedelta(days=40), today):
        (logs / day.isoformat()).mkdir(parents=True)
        (logs / day.isoformat() / "blue-1.arrows").write_bytes(b"a log file")  # retention reads none
    yield {"spec": spec, "con": con, "landing": landing, "registry": registry, "logs": logs, "today": today}
    con.close()


def _run(home: dict, dry_run: bool = False) -> retention.RetentionReport:
    return retention.run_retention(
        home["spec"],
        home["con"],
        home["landing"],
        home["logs"].parent,
        home["registry"],
        DeployState(),
        home["registry"].audit(),
        who="ops",
        dry_run=dry_run,
    )


def test_a_dry_run_deletes_nothing(home: dict) -> None:
    report = _run(home, dry_run=True)
    assert report.deleted_partitions == [FIRST_DAYS[0]] and report.rows_deleted["raw"] > 0
    assert partition_files(home["landing"], "flights_delay", FIRST_DAYS[0])
    assert _count(home["con"], "raw", FIRST_DAYS[0]) == report.rows_deleted["raw"]
    assert len(home["registry"].audit().entries()) == 1  # only the promotion


def test_old_raw_partitions_and_logs_go_and_the_champions_stay(home: dict) -> None:
    con, landing = home["con"], home["landing"]
    doomed = landing / "flights_delay" / f"{FIRST_DAYS[0]}.csv"
    digest, raw_rows = sha256_of(doomed), _count(con, "raw", FIRST_DAYS[0])
    validated_rows = _count(con, "validated", FIRST_DAYS[0])

    report = _run(home)
    # the newest partition ends 2013-01-04 00:00 local: with raw_days 1 the first two are expired,
    # and the second is kept because the champion was trained on it
    assert report.expired == FIRST_DAYS[:2] and report.deleted_partitions == [FIRST_DAYS[0]]
    assert report.kept == {FIRST_DAYS[1]: "training data of v0001, the champion"}
    assert not doomed.exists() and (landing / "flights_delay" / f"{FIRST_DAYS[1]}.csv").exists()
    assert _count(con, "raw", FIRST_DAYS[0]) == 0 and _count(con, "quarantine", FIRST_DAYS[0]) == 0
    assert _count(con, "raw", FIRST_DAYS[1]) > 0 and _count(con, "raw_tags", FIRST_DAYS[0]) == 1
    assert _count(con, "validated", FIRST_DAYS[0]) == validated_rows > 0  # curated layers stay
    old = home["logs"] / (home["today"] - timedelta(days=40)).isoformat()
    assert not old.exists() and (home["logs"] / home["today"].isoformat()).exists()

    log = home["registry"].audit()
    raw_entry, log_entry = log.entries()[-2:]
    assert (raw_entry["action"], raw_entry["subject"], raw_entry["who"]) == (
        "retention_delete",
        "flights_delay/raw",
        "ops",
    )
    assert raw_entry["details"]["rows_deleted"]["raw"] == raw_rows
    assert raw_entry["details"]["files_deleted"] == [
        {"path": str(doomed), "sha256": digest, "bytes": raw_entry["details"]["files_deleted"][0]["bytes"]}
    ]
    assert "retention.raw_days 1" in raw_entry["why"]
    assert log_entry["subject"] == "flights_delay/predictions" and log_entry["details"]["files_deleted"] == 1
    assert log.verify().ok

    again = _run(home)  # nothing more to delete: no new deletion entry, only the kept partition noted
    assert again.deleted_partitions == [] and again.rows_deleted == {} and again.log_folders_deleted == []


def test_after_a_rollback_the_next_rollback_target_keeps_its_data(tmp_path: Path) -> None:
    """v1 -> v2 -> v3, then a rollback to v2: a second rollback would go to v1, so v1 is protected."""
    registry = Registry(tmp_path / "registry", "flights_delay")
    for _ in range(3):
        version = registry.register(trained_model(model_sha256="x"))
        registry.update(version, verdict={"passed": True, "reasons": []})
        registry.promote(version, who="ann", why="better")
    registry.rollback(who="ann", why="v0003 misbehaves")
    assert registry.champion_version() == "v0002"
    assert retention.protected_models(registry, DeployState()) == {
        "v0002": "the champion",
        "v0001": "the previous champion (rollback target)",
    }
