"""`ct deploy` on a home where nothing serves: its status, and each action a user may try before
(or without) a deployment, refused in one line that says what is missing. Rollouts with real
slots and HAProxy are in `ct_assets_tests/lib/serving/` (marked slow)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ct_assets.app.cli.status import render
from ct_assets.app.system_status import collect
from ct_assets.lib.core import processes, settings
from ct_assets.lib.core.audit import home_log
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.deployment_state import DeployState, SlotBento, SlotProcess
from ct_assets.lib.serving.request_gate import INSTANCE_VARIABLE
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error, register_version
from ct_assets_tests.conftest import FLIGHTS_SPEC, free_ports
from ct_assets_tests.lib.serving.lock_holder import hold_the_lock
from ct_assets_tests.lib.serving.test_slots import EMPTY_SLOT_HEALTH

CANARY = "flights_delay_service:v0001-aaaaaaaaaaaa"


def _promote_a_champion() -> None:
    config = settings.config()
    models = Registry(config.registry, "flights_delay", config.audit_home)
    models.promote(register_version(models, passed=True), who="ann", why="first model")


def test_status_of_a_home_where_nothing_serves(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("deploy", "status")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert report["state"] == {
        "active": None,
        "slots": {},
        "previous": None,
        "pending": None,
        "proxy_supervisor_pid": None,
        "stopping_since": None,
        "stopped_at": None,
        "stopped_by": None,
    }
    assert report["health"]["proxy"]["up"] is False and report["health"]["proxy"]["starts"] == 0
    assert "the proxy on port 3700 is down" in report["health"]["proxy"]["error"]
    assert report["health"]["slots"] == {slot: EMPTY_SLOT_HEALTH for slot in ("blue", "green")}
    assert report["audit"] == []


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("approve", "ct: no rollout is waiting for approval"),
        ("rollback", "ct: no previous deployment to roll back to"),
        ("start", "ct: flights_delay has no champion to deploy: train and promote a model first"),
    ],
)
def test_an_action_with_nothing_deployed(run_ct: RunCt, home: Path, action: str, message: str) -> None:
    ran = run_ct("deploy", action, "--why", "operator test")
    assert one_line_error(ran) == message
    assert ran.code == 1
    assert home_log(home).entries() == []


def test_start_with_a_champion_but_no_features(run_ct: RunCt, home: Path) -> None:
    _promote_a_champion()
    open_connection(home / "warehouse.duckdb").close()
    ran = run_ct("deploy", "start")
    assert one_line_error(ran) == "ct: the warehouse holds no features for flights_delay: ingest data first"
    assert not (home / "online").exists() and not (home / "deploy" / "flights_delay" / "state.json").exists()


def test_approving_a_canary_while_the_proxy_is_down(run_ct: RunCt, home: Path) -> None:
    deployment = deploy_steps.deployment(load_spec(FLIGHTS_SPEC), settings.config())
    deployment.record.save(DeployState(pending=SlotBento(slot="green", bento=CANARY)))
    ran = run_ct("deploy", "approve", "--why", "healthy canary")
    assert one_line_error(ran).startswith("ct: the proxy on port 3700 is down (no answer on ")
    state = json.loads(run_ct("deploy", "status").out)["state"]
    assert state["active"] is None and state["pending"] == {"slot": "green", "bento": CANARY}
    assert [e for e in home_log(home).entries() if e["action"] == "approved"] == [], "no switch, no approval"


def test_approving_a_canary_whose_server_is_gone(run_ct: RunCt, home: Path) -> None:
    deployment = deploy_steps.deployment(load_spec(FLIGHTS_SPEC), settings.config())
    done = subprocess.Popen(["true"])
    done.wait()
    canary = SlotProcess(bento=CANARY, pid=done.pid, port=1, started_at="t")
    pending = SlotBento(slot="green", bento=CANARY)
    deployment.record.save(DeployState(slots={"green": canary}, pending=pending))
    ran = run_ct("deploy", "approve", "--why", "healthy canary")
    assert one_line_error(ran) == (
        f"ct: the server of slot green ({CANARY}) is gone: nothing to approve (roll the bento out again)"
    )
    assert deployment.state().pending == pending and deployment.audit_log() == []


def test_start_with_a_champion_and_no_warehouse_yet(run_ct: RunCt, home: Path) -> None:
    _promote_a_champion()
    ran = run_ct("deploy", "start")
    assert one_line_error(ran) == (
        f"ct: no warehouse at {home / 'warehouse.duckdb'} yet: nothing has been ingested "
        "(land files and ingest first)"
    )
    assert ran.code == 1 and not (home / "warehouse.duckdb").exists()


def test_stop_with_nothing_running(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("deploy", "stop")
    assert (ran.code, ran.out, ran.err) == (
        0,
        "the flights_delay deployment was already stopped: nothing runs\n",
        "",
    )
    assert json.loads(run_ct("deploy", "status").out)["state"]["slots"] == {}


def _sleeping() -> subprocess.Popen:
    """A real process in a session of its own, standing in for a slot's server or the proxy's
    supervisor (`ct deploy stop` stops both the same way: a SIGTERM to the process group)."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True)


def test_stop_clears_what_it_stopped_and_a_stopped_deployment_says_so(run_ct: RunCt, home: Path) -> None:
    spec = load_spec(FLIGHTS_SPEC)
    deployment = deploy_steps.deployment(spec, settings.config())
    slot, supervisor = _sleeping(), _sleeping()
    try:
        serving = SlotProcess(bento=CANARY, pid=slot.pid, port=spec.serving.green_port, started_at="t")
        deployment.record.save(
            DeployState(
                active="green",
                slots={"green": serving},
                previous=SlotBento(slot="blue", bento="flights_delay_service:v0000-bbbbbbbbbbbb"),
                proxy_supervisor_pid=supervisor.pid,
            )
        )
        ran = run_ct("deploy", "stop", "--who", "ann", "--why", "planned maintenance")
        # the recorded supervisor pid names a process that is not this deployment's circusd (as a
        # reused pid would): the state forgets it, the process is left alone
        assert (ran.code, ran.out, ran.err) == (0, "stopped slot green\n", "")
        assert not processes.is_running(slot.pid) and processes.is_running(supervisor.pid)
    finally:
        for process in (slot, supervisor):
            if process.poll() is None:
                process.kill()
    report = json.loads(run_ct("deploy", "status").out)
    stopped_at = report["state"]["stopped_at"]
    assert stopped_at and report["state"] == {
        "active": None,
        "slots": {},
        "previous": None,
        "pending": None,
        "proxy_supervisor_pid": None,
        "stopping_since": None,
        "stopped_at": stopped_at,
        "stopped_by": "ann",
    }
    assert report["health"]["proxy"]["supervisor_pid"] is None and "error" not in report["health"]["proxy"]
    assert report["health"]["stopped"] == (
        f"stopped at {stopped_at} by ann (`ct deploy stop`): nothing serves; "
        "`ct deploy start` deploys the champion"
    )
    (entry,) = report["audit"]
    assert (entry["action"], entry["who"], entry["why"]) == ("deploy_stop", "ann", "planned maintenance")
    assert (entry["stopped"], entry["active"], entry["bentos"]) == (
        ["slot green"],
        "green",
        {"green": CANARY},
    )

    again = run_ct("deploy", "stop")
    assert (again.code, again.out) == (0, "the flights_delay deployment was already stopped: nothing runs\n")
    assert len(deployment.audit_log()) == 1  # nothing was stopped the second time
    for action, what in (
        ("approve", "no rollout waits for approval"),
        ("rollback", "no deployment to roll back"),
    ):
        ran = run_ct("deploy", action, "--why", "operator test")
        assert one_line_error(ran) == (
            f"ct: the flights_delay deployment is stopped (since {stopped_at}): {what} "
            "(`ct deploy start` deploys the champion)"
        )
    status = collect(spec)
    assert status.stopped_at == stopped_at and not any(s.active or s.bento for s in status.serving.values())
    assert render(status).splitlines()[1] == (
        f"serving       stopped since {stopped_at[:19]} (ct deploy stop): no slot active"
    )


def test_stop_says_it_stopped_the_workers_a_killed_server_left(run_ct: RunCt, home: Path) -> None:
    """`kill -9` of a slot's server leaves its workers serving: status says so, `ct deploy stop`
    stops them and says it did."""
    deployment = deploy_steps.deployment(load_spec(FLIGHTS_SPEC), settings.config())
    server = subprocess.Popen(
        ["sh", "-c", "sleep 300 & sleep 300 & wait"],
        start_new_session=True,
        env={**os.environ, INSTANCE_VARIABLE: "green-1"},
    )
    deadline = time.monotonic() + 10
    while len(processes.descendants(server.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = processes.descendants(server.pid)
    serving = SlotProcess(bento=CANARY, pid=server.pid, port=1, started_at="t", instance="green-1")
    deployment.record.save(DeployState(active="green", slots={"green": serving}))
    server.kill()
    server.wait(timeout=10)
    try:
        problem = json.loads(run_ct("deploy", "status").out)["health"]["slots"]["green"]["problem"]
        assert problem.startswith(f"its server process {server.pid} is gone but 2 of its workers still serve")
        ran = run_ct("deploy", "stop", "--why", "cleanup")
        assert (ran.code, ran.out, ran.err) == (
            0,
            "stopped 2 leftover worker processes of slot green (its server was gone)\n",
            "",
        )
        assert all(processes.wait_gone(w, 10) for w in workers)
    finally:
        for worker in workers:
            if processes.is_running(worker):
                os.kill(worker, signal.SIGKILL)


def test_every_change_is_refused_while_another_process_changes_the_deployment(
    run_ct: RunCt, home: Path
) -> None:
    """A rollout in another process (a `ct deploy start`, a Dagster run) holds the deployment's
    lock: start, stop, approve and rollback are each refused at once in one line naming it."""
    _promote_a_champion()
    folder = home / "deploy" / "flights_delay"
    folder.mkdir(parents=True)
    state = DeployState(pending=SlotBento(slot="green", bento=CANARY))
    deploy_steps.deployment(load_spec(FLIGHTS_SPEC), settings.config()).record.save(state)
    holder = hold_the_lock(folder)
    try:
        since = json.loads((folder / "deploy.lock").read_text())["since"]
        for action, wanted in (
            ("start", "deploy start"),
            ("stop", "stop"),
            ("approve", "approval"),
            ("rollback", "rollback"),
        ):
            ran = run_ct("deploy", action, "--why", "operator test")
            assert one_line_error(ran) == (
                f"ct: the flights_delay deployment is busy: pid {holder.pid} holds it since {since} "
                f"(rollout of b:v2 by ann); {wanted} refused, try again when that ends"
            )
            assert ran.code == 1
    finally:
        holder.kill()
        holder.wait(timeout=10)
    deployment = deploy_steps.deployment(load_spec(FLIGHTS_SPEC), settings.config())
    assert deployment.state() == state and deployment.audit_log() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["deploy"], "ct deploy: the following arguments are required: action (see ct deploy --help)"),
        (
            ["deploy", "restart"],
            "ct deploy: argument action: invalid choice: 'restart' "
            "(choose from 'start', 'status', 'rollback', 'approve', 'stop', 'ops') (see ct deploy --help)",
        ),
        (
            ["deploy", "ops", "--port", "http"],
            "ct deploy: argument --port: invalid int value: 'http' (see ct deploy --help)",
        ),
    ],
)
def test_arguments_a_user_gets_wrong(run_ct: RunCt, argv: list[str], message: str) -> None:
    ran = run_ct(*argv)
    assert ran.code == 2
    assert one_line_error(ran) == message


def test_deploy_of_an_unknown_pipeline(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("deploy", "status", "--pipeline", "no_such_pipeline")
    assert one_line_error(ran).startswith("ct: no pipeline 'no_such_pipeline' in ")
    assert not (home / "deploy").exists()


def _status_code(url: str, ops: subprocess.Popen, timeout: float = 30) -> int:
    """The code `GET url` answers with once the server listens (any code)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ops.poll() is None:
        try:
            return httpx.get(url, headers={"authorization": "Bearer t0ken"}, timeout=2).status_code
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"ct deploy ops did not answer on {url} (exit code {ops.poll()})")


@pytest.mark.parametrize("token", [None, "t0ken"])
def test_the_operator_api_says_at_start_whether_it_is_enabled(home: Path, token: str | None) -> None:
    """Without CT_OPERATOR_TOKEN, `ct deploy ops` says on stderr that the API is disabled (every call
    answers 503) and keeps serving for its watchdog; with it, it says where the API answers."""
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if k != "CT_OPERATOR_TOKEN"}
    env.update({"CT_OPERATOR_TOKEN": token} if token else {})
    ops = subprocess.Popen(
        [str(Path(sys.executable).parent / "ct"), "deploy", "ops", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = (ops.stdout if token else ops.stderr).readline().strip()  # type: ignore[union-attr]
        status = _status_code(f"http://127.0.0.1:{port}/status", ops)
        ops.send_signal(signal.SIGINT)
        ops.communicate(timeout=30)
    finally:
        if ops.poll() is None:
            ops.kill()
    url = f"http://127.0.0.1:{port}"
    if token:
        assert (
            line == f"operator API on {url} (bearer token from CT_OPERATOR_TOKEN), with the serving watchdog"
        )
        assert status == 200
    else:
        assert line == (
            f"ct: the operator API on {url} is disabled until CT_OPERATOR_TOKEN is set (every call answers "
            "503); the serving watchdog runs"
        )
        assert status == 503


def test_the_operator_api_on_a_busy_port_is_refused_before_anything_starts(run_ct: RunCt, home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = run_ct("deploy", "ops", "--port", str(port))
    assert one_line_error(ran) == (
        f"ct: port {port} is already in use (Address already in use): the operator API not started; "
        "stop what listens there or choose another with --port"
    )
    assert (ran.code, ran.out) == (1, "")
