"""The scale-out instance (`dagster.postgres.yaml`) on a real, throwaway PostgreSQL cluster: a code
server, a webserver and a `dagster-daemon` run as separate processes that meet only in the
database (and the code server's gRPC port). Backfills of three partitions of the ingest job are
launched through the webserver as the UI does, queued, launched by the daemon under the warehouse
pool, and their runs and materializations are checked in Postgres with SQL, then through
`DagsterInstance`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import AbstractContextManager, closing, suppress
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from dagster_postgres import PostgresRunStorage

from bench.postgres_cluster import PostgresUnavailable, postgres_bin, postgres_cluster
from ct_assets.app.instance_home import prepare_dagster_home
from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets_tests.conftest import free_ports

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]
JOB = "flights_delay_ingest"
POOL = "duckdb_warehouse"
RUN_DEADLINE_SECONDS = 240
LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""


def _postgres_cluster() -> AbstractContextManager[dict[str, str]]:
    """The throwaway cluster of `bench/postgres_cluster.py`; the test is skipped without PostgreSQL."""
    try:
        postgres_bin()
    except PostgresUnavailable as missing:
        pytest.skip(str(missing))
    return postgres_cluster()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running process in its own process group (its children included), logging to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=settings.REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (Dagster's processes shut down cleanly on it), then SIGKILL whatever is left of the group."""
    group = process.pid
    if process.poll() is None:
        os.killpg(group, signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    if not _group_gone(group, 10):
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=10)
    _group_gone(group, 10)  # killed members are gone once init has reaped them


def _group_gone(group: int, seconds: float) -> bool:
    """Wait up to `seconds` for every process of the group to be gone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"code server exited: {log.read_text()[-3000:]}"
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"code server not listening after {timeout} s: {log.read_text()[-3000:]}")


def _graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


def _wait_for_webserver(port: int, webserver: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert webserver.poll() is None, f"webserver exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert time.monotonic() < deadline, f"webserver not up: {log.read_text()[-3000:]}"
            time.sleep(0.5)


def _launch_backfill(port: int, partitions: list[str]) -> str:
    """Launch a backfill of the ingest job through the webserver's GraphQL API, as the UI does."""
    params = {
        "selector": {
            "partitionSetName": f"{JOB}_partition_set",
            "repositorySelector": {"repositoryLocationName": "ct_assets", "repositoryName": "__repository__"},
        },
        "partitionNames": partitions,
        "title": f"scale-out test {partitions[0]}",
    }
    launched = _graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def test_backfill_through_daemon_and_pools_on_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_spec: PipelineSpec
) -> None:
    import psycopg2

    from ct_assets.app.demo import land_days, materialize_context

    with _postgres_cluster() as pg_env:
        home = tmp_path / "home"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
        env = {
            **base,
            **pg_env,
            "CT_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "CT_DAGSTER_YAML": "dagster.postgres.yaml",
        }
        for name in [k for k in os.environ if k.startswith(("CT_", "DAGSTER_"))]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

        # What `ct` does: install the chosen instance file as $DAGSTER_HOME/dagster.yaml.
        assert prepare_dagster_home() == home / "dagster"
        installed = (home / "dagster" / "dagster.yaml").read_text()
        assert installed == (settings.REPO_ROOT / "dagster.postgres.yaml").read_text()
        assert pg_env["CT_PG_PASSWORD"] not in installed

        land_days(flights_spec, DAYS, settings.config().landing)
        grpc_port, web_port = free_ports(1)[0], free_ports(1)[0]
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(
            "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {grpc_port}\n      location_name: ct_assets\n"
        )
        logs = {name: tmp_path / f"{name}.log" for name in ("code_server", "webserver", "daemon")}
        processes: list[subprocess.Popen[bytes]] = []
        try:
            # The code server does not open the instance until asked to, so it loads the code
            # location while this process creates Dagster's tables in Postgres (first instance to
            # connect) and loads the context tables the features join.
            code_server = _start(
                [
                    str(BIN / "dagster"), "code-server", "start", "-m", "ct_assets.definitions",
                    "-h", "127.0.0.1", "-p", str(grpc_port), "--location-name", "ct_assets",
                ],
                env,
                logs["code_server"],
            )  # fmt: skip
            processes.append(code_server)
            with dg.DagsterInstance.get() as instance:
                materialize_context(flights_spec, instance)
            _wait_for_port(grpc_port, code_server, logs["code_server"], timeout=120)
            webserver = _start(
                [
                    str(BIN / "dagster-webserver"),
                    "-w",
                    str(workspace),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(web_port),
                ],
                env,
                logs["webserver"],
            )
            processes.append(webserver)
            _wait_for_webserver(web_port, webserver, logs["webserver"])
            # Two backfills at once, as from the UI: the first two days, then the third. Each becomes
            # one run (the assets' single-run backfill policy) and both runs want the one warehouse
            # slot. The daemon starts after them, so its first backfill tick picks them up.
            backfill_ids = [_launch_backfill(web_port, DAYS[:2]), _launch_backfill(web_port, DAYS[2:])]
            processes.append(
                _start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env, logs["daemon"])
            )

            connection = psycopg2.connect(
                host=pg_env["CT_PG_HOST"],
                port=int(pg_env["CT_PG_PORT"]),
                user=pg_env["CT_PG_USER"],
                password=pg_env["CT_PG_PASSWORD"],
                dbname=pg_env["CT_PG_DB"],
            )
            connection.autocommit = True
            with closing(connection), connection.cursor() as cur:
                runs = _wait_for_runs(cur, backfill_ids, logs)
                _check_postgres(cur, runs)
                _check_pool(cur, list(runs), _pool_steps())
        finally:
            for process in reversed(processes):
                _stop(process)
        for process in processes:
            with pytest.raises(ProcessLookupError):
                os.killpg(process.pid, 0)

        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            for backfill_id in backfill_ids:
                backfill = instance.get_backfill(backfill_id)
                assert backfill is not None and backfill.partition_names in (DAYS[:2], DAYS[2:])
                backfill_runs = instance.get_runs(
                    filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})
                )
                assert {r.run_id for r in backfill_runs} == {i for i, b in runs.items() if b == backfill_id}
                assert {r.status for r in backfill_runs} == {dg.DagsterRunStatus.SUCCESS}
            for name in ("raw", "validated", "features"):
                key = dg.AssetKey(["flights_delay", name])
                assert instance.get_materialized_partitions(key) == set(DAYS), name

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        counts = con.execute(
            "SELECT _partition_key, count(*) FROM flights_delay.features GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert counts == [("2013-01-01", 842), ("2013-01-02", 943), ("2013-01-03", 914)]


def _pool_steps() -> set[str]:
    """The ingest job's steps (ops) that are in the warehouse pool, from its definition."""
    from ct_assets.definitions import defs

    job = defs().resolve_job_def(JOB)
    steps = {node.name for node in job.graph.nodes if node.definition.pool == POOL}
    assert {"flights_delay__raw", "flights_delay__validated", "flights_delay__features"} <= steps
    return steps


def _wait_for_runs(cur: Any, backfill_ids: list[str], logs: dict[str, Path]) -> dict[str, str]:
    """Poll the runs table until each backfill has runs and all of them finished, then require
    success; return {run_id: backfill_id}."""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    rows: list[tuple[str, str, str]] = []
    while time.monotonic() < deadline:
        cur.execute(
            """
            SELECT r.run_id, r.status, b.value FROM runs r
            JOIN run_tags b ON b.run_id = r.run_id AND b.key = 'dagster/backfill' AND b.value = ANY(%s)
            """,
            (backfill_ids,),
        )
        rows = cur.fetchall()
        finished = all(status in ("SUCCESS", "FAILURE", "CANCELED") for _, status, _ in rows)
        if finished and {backfill for _, _, backfill in rows} == set(backfill_ids):
            break
        time.sleep(1)
    else:
        raise AssertionError(
            f"runs not finished after {RUN_DEADLINE_SECONDS} s: {rows}\n"
            + "\n".join(f"--- {name}\n{path.read_text()[-3000:]}" for name, path in logs.items())
        )
    assert all(status == "SUCCESS" for _, status, _ in rows), rows
    return {run_id: backfill for run_id, _, backfill in rows}


def _check_postgres(cur: Any, runs: dict[str, str]) -> None:
    """The evidence, read with SQL from Dagster's tables: every run was queued, launched by the daemon,
    started and succeeded; each partition of raw, validated and features has exactly one
    materialization."""
    ids = list(runs)
    cur.execute("SELECT DISTINCT pipeline_name FROM runs WHERE run_id = ANY(%s)", (ids,))
    assert cur.fetchall() == [(JOB,)]
    cur.execute(
        """
        SELECT dagster_event_type, count(DISTINCT run_id) FROM event_logs
        WHERE run_id = ANY(%s) AND dagster_event_type IN
            ('PIPELINE_ENQUEUED', 'PIPELINE_STARTING', 'PIPELINE_START', 'PIPELINE_SUCCESS')
        GROUP BY 1
        """,
        (ids,),
    )
    assert dict(cur.fetchall()) == dict.fromkeys(
        ["PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"], len(ids)
    )
    cur.execute(
        """
        SELECT asset_key, partition, count(*) FROM event_logs
        WHERE run_id = ANY(%s) AND dagster_event_type = 'ASSET_MATERIALIZATION'
        GROUP BY 1, 2
        """,
        (ids,),
    )
    materialized = {(key, partition): n for key, partition, n in cur.fetchall()}
    for name in ("raw", "validated", "features"):
        key = dg.AssetKey(["flights_delay", name]).to_string()
        assert {p: materialized.get((key, p)) for p in DAYS} == dict.fromkeys(DAYS, 1), name


def _check_pool(cur: Any, ids: list[str], pool_steps: set[str]) -> None:
    """The warehouse pool, seen in Postgres: its limit of one is in the concurrency tables; a run
    was queued while another was running, so the two competed for the slot (max_concurrent_runs is
    4, so only the pool holds a run back); and no two pool steps ever ran at the same time. A run
    may start before the other has finished: the daemon launches it once the slot is free, and the
    other still records its success after its last pool step (seen in CI: 0.3 s earlier)."""
    cur.execute('SELECT "limit" FROM concurrency_limits WHERE concurrency_key = %s', (POOL,))
    assert cur.fetchall() == [(1,)]
    cur.execute(
        """
        SELECT run_id, dagster_event_type, min(timestamp) FROM event_logs
        WHERE run_id = ANY(%s) AND dagster_event_type IN
            ('PIPELINE_ENQUEUED', 'PIPELINE_STARTING', 'PIPELINE_SUCCESS')
        GROUP BY 1, 2
        """,
        (ids,),
    )
    at = {(run_id, kind): when for run_id, kind, when in cur.fetchall()}
    in_launch_order = sorted(ids, key=lambda run_id: at[(run_id, "PIPELINE_STARTING")])
    competed = 0
    for first, second in itertools.pairwise(in_launch_order):
        competed += at[(second, "PIPELINE_ENQUEUED")] < at[(first, "PIPELINE_SUCCESS")]
    assert competed, f"no run was queued while another ran, so the pool was not tested: {at}"
    cur.execute(
        """
        SELECT run_id, step_key, dagster_event_type, timestamp FROM event_logs
        WHERE run_id = ANY(%s) AND step_key = ANY(%s)
            AND dagster_event_type IN ('STEP_START', 'STEP_SUCCESS', 'STEP_FAILURE')
        ORDER BY timestamp, id
        """,
        (ids, sorted(pool_steps)),
    )
    intervals: dict[tuple[str, str], list] = {}
    for run_id, step, _, when in cur.fetchall():
        intervals.setdefault((run_id, step), []).append(when)
    assert {step for _, step in intervals} == pool_steps
    spans = sorted((min(times), max(times), key) for key, times in intervals.items())
    for (_, end, key), (start, _, next_key) in itertools.pairwise(spans):
        assert start >= end, f"pool steps overlapped: {key} and {next_key}"
