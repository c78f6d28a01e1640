"""A run killed with SIGKILL in the middle of writing a partition, then rerun, leaves exactly the
tables of an uninterrupted run.

The README's backfill command (`dagster asset materialize ... --partition-range`) runs as a
subprocess on a real instance and a real DuckDB file. The killed run stops at a fault point
(`ct_assets.lib.core.faults`, `CT_FAULT_PAUSE`) inside the write transaction of `validated` for its second
day: the partition's rows are deleted and re-inserted but not committed, and earlier writes are
committed (raw of both days, validated of the first). The kill takes the run's whole process group
(the run worker and any step worker). Then: the warehouse opens and holds the committed writes and nothing
of the uncommitted one; the killed run still holds the warehouse pool's slot, so a rerun would wait
forever, until the `dead_run_recovery` sensor's tick marks it failed and frees the slot; the rerun
succeeds, and every partitioned table equals the uninterrupted run's, row for row, except wall-clock
columns (`WALL_CLOCK`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from ct_assets.defs.data.common import group_asset_name
from ct_assets.defs.recovery import dead_run_recovery
from ct_assets.lib.core import processes, settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import connection
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DAYS = ["2013-01-01", "2013-01-02"]
KILL_AT = f"write flights_delay.validated {DAYS[1]}"
# Columns holding the time of the run itself, which no rerun reproduces (arrival lag is measured
# from the ingestion time).
WALL_CLOCK = {
    "raw": ["_ingested_at"],
    "validated": ["_ingested_at"],
    "quarantine": ["quarantined_at"],
    "raw_tags": ["ingested_at", "arrival_lag_hours"],
}


def _home(root: Path, spec: PipelineSpec, landing: Path) -> dict[str, str]:
    """A CT_HOME with the instance's dagster.yaml and the context tables loaded; its environment."""
    (root / "dagster").mkdir(parents=True)
    (root / "dagster" / "dagster.yaml").write_text((settings.REPO_ROOT / "dagster.yaml").read_text())
    with connection(root / "warehouse.duckdb") as con:
        for table in spec.context_tables:
            data_steps.load_context(con, spec, table, context_file(landing, spec.name, table))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    return {**env, "CT_HOME": str(root), "DAGSTER_HOME": str(root / "dagster"), "CT_LANDING": str(landing)}


def _materialize(spec: PipelineSpec) -> list[str]:
    """The README's backfill command for the data layer of both days, in one run (the code
    location's default executor)."""
    names = ["raw", "validated", "quarantine", *(group_asset_name(g) for g in groups(spec)), "features"]
    keys = [f"{spec.name}/{name}" for name in names]
    command = [str(BIN / "dagster"), "asset", "materialize", "-m", "ct_assets.definitions"]
    return [*command, "--select", ",".join(keys), "--partition-range", f"{DAYS[0]}...{DAYS[-1]}"]


def _partition_tables(path: Path, schema: str) -> dict[str, pd.DataFrame]:
    """Every partitioned table's rows of DAYS, wall-clock columns left out, in a stable order."""
    tables = {}
    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = ? "
                "AND column_name = '_partition_key' ORDER BY 1",
                [schema],
            ).fetchall()
        ]
        for name in names:
            excluded = WALL_CLOCK.get(name, [])
            columns = "* EXCLUDE (" + ", ".join(excluded) + ")" if excluded else "*"
            tables[name] = con.execute(
                f'SELECT {columns} FROM "{schema}"."{name}" WHERE _partition_key IN (?, ?) ORDER BY ALL',
                DAYS,
            ).df()
    return tables


def _runs(home: dict[str, str]) -> list[dg.DagsterRun]:
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = home["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            return list(reversed(instance.get_runs()))
    finally:
        os.environ.pop("DAGSTER_HOME") if previous is None else os.environ.update(DAGSTER_HOME=previous)


def test_a_run_killed_mid_partition_write_reruns_to_the_same_tables(
    tmp_path: Path, flights_spec: PipelineSpec, flights_landing: Path
) -> None:
    spec = flights_spec
    reference_home = _home(tmp_path / "reference", spec, flights_landing)
    killed_home = _home(tmp_path / "killed", spec, flights_landing)
    warehouse = tmp_path / "killed" / "warehouse.duckdb"
    marker = tmp_path / "fault_marker"

    # The uninterrupted run, in parallel with the one to be killed (separate homes and files).
    reference = subprocess.Popen(
        _materialize(spec),
        env=reference_home,
        cwd=settings.REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = subprocess.Popen(
        _materialize(spec),
        env={**killed_home, "CT_FAULT_PAUSE": KILL_AT, "CT_FAULT_MARKER": str(marker)},
        cwd=settings.REPO_ROOT,
        stdout=(tmp_path / "killed.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert victim.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached the fault point"
            time.sleep(0.05)
        writer_pid, point = marker.read_text().split(" ", 1)
        writer = int(writer_pid)
        # Proof that the kill lands mid-write: the writer is alive, inside the transaction at the
        # fault point, and belongs to the process group that is killed.
        assert point.strip() == KILL_AT
        assert processes.is_running(writer) and os.getpgid(writer) == victim.pid
        wal_at_kill = Path(f"{warehouse}.wal").exists()
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert processes.wait_gone(writer, 10), "the step worker outlived its process group"
    print(f"killed at {KILL_AT!r} (writer pid {writer}); WAL present at kill: {wal_at_kill}")

    # The warehouse opens (the WAL replays) with the committed writes and none of the open one.
    with duckdb.connect(str(warehouse)) as con:

        def count(table: str) -> dict[str, int]:
            return dict(
                con.execute(f"SELECT _partition_key, count(*) FROM {spec.name}.{table} GROUP BY 1").fetchall()
            )

        raw_after_kill, validated_after_kill = count("raw"), count("validated")
        quarantine_after_kill = count("quarantine")
    assert set(raw_after_kill) == set(DAYS)
    assert set(validated_after_kill) == {DAYS[0]} and DAYS[1] not in quarantine_after_kill

    # The killed run is not successful, and it still holds the warehouse pool's only slot.
    killed_run = _runs(killed_home)[-1]
    assert killed_run.status == dg.DagsterRunStatus.STARTED
    os.environ["DAGSTER_HOME"] = killed_home["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            info = instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
            assert [s.run_id for s in info.claimed_slots] == [killed_run.run_id]
            skip = dead_run_recovery(dg.build_sensor_context(instance=instance))  # the daemon's next tick
            assert killed_run.run_id[:8] in str(skip.skip_message) and "1 slot(s) freed" in str(
                skip.skip_message
            )
            assert instance.event_log_storage.get_concurrency_info("duckdb_warehouse").claimed_slots == []
    finally:
        os.environ.pop("DAGSTER_HOME")

    told = subprocess.run(
        [str(BIN / "ct"), "recover"], env=killed_home, capture_output=True, text=True, timeout=120
    )  # the same step on demand (no daemon): nothing left to do
    assert told.returncode == 0 and "no run with a dead worker" in told.stdout, told.stdout + told.stderr

    rerun = subprocess.run(
        _materialize(spec),
        env=killed_home,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out[-3000:]

    runs = _runs(killed_home)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
    assert [r.status for r in _runs(reference_home)] == [dg.DagsterRunStatus.SUCCESS]

    expected = _partition_tables(tmp_path / "reference" / "warehouse.duckdb", spec.name)
    actual = _partition_tables(warehouse, spec.name)
    data_tables = {"raw", "validated", "quarantine", "features", *(g.table for g in groups(spec))}
    assert data_tables <= set(expected) and set(actual) == set(expected)
    for name, frame in expected.items():
        assert set(frame["_partition_key"]) == set(DAYS) or name == "quarantine", name
        pd.testing.assert_frame_equal(actual[name], frame, check_exact=True, obj=name)
    assert len(expected["raw"]) == 842 + 943
    assert len(expected["features"]) == len(expected["validated"])
    assert not Path(f"{warehouse}.wal").exists()
