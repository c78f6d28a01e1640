"""Slot control with real processes: a process group is stopped whole (a leader that ignores
SIGTERM, a worker in its own session, a worker marked with the slot's instance after its server
died), and `SlotControl` records, starts, replaces and stops slots. A slot's server here is a
stand-in for `bentoml serve` (same command line, answers /readyz and /alive); the slow tests start
it, and one puts a real supervised HAProxy in front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ct_assets.lib.core import processes
from ct_assets.lib.serving import proxy, proxy_supervisor
from ct_assets.lib.serving.deployment_state import DeploymentRecord, DeployState, SlotProcess
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.slots import INSTANCE_VARIABLE, SlotControl, terminate_group
from ct_assets_tests.conftest import free_ports, requires_haproxy

# `SlotControl.health`'s entry for a slot with nothing in it and no proxy to ask.
EMPTY_SLOT_HEALTH = {
    "bento": None,
    "process": None,
    "proxy_status": None,
    "weight": None,
    "last_check": None,
    "problem": None,
}


def _group(command: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["sh", "-c", command], start_new_session=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL
    )


def _children(pid: int, count: int) -> list[int]:
    _until(lambda: len(processes.descendants(pid)) >= count, f"{pid} started {count} children")
    return processes.descendants(pid)


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (up to 10 s) for a started process to reach the state the test is about: a child is
    visible before it has run `setsid` or exec'd with its own environment."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _gone(*pids: int) -> bool:
    return all(processes.wait_gone(p, 5) for p in pids)


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    leader = _group('trap "" TERM; sleep 300 & wait')
    (child,) = _children(leader.pid, 1)
    started = time.monotonic()
    terminate_group(leader.pid, timeout=1)
    assert 1 <= time.monotonic() - started < 5
    assert _gone(leader.pid, child)


def test_a_worker_in_its_own_session_is_stopped_with_its_server() -> None:
    """A SIGTERM to the server's group does not reach it (BentoML's workers): it is killed too."""
    leader = _group("setsid sleep 300 & wait")
    (worker,) = _children(leader.pid, 1)
    _until(lambda: os.getsid(worker) != os.getsid(leader.pid), "the worker left its server's session")
    terminate_group(leader.pid, timeout=1)
    assert _gone(leader.pid, worker)


def test_workers_of_the_slots_instance_are_stopped_even_after_their_server_died() -> None:
    """Workers reparented away from their server still carry its instance: they get their SIGTERM at
    once; another slot's worker is left alone."""
    server = _group("sleep 300", **{INSTANCE_VARIABLE: "slot-a"})
    orphan = _group("sleep 300", **{INSTANCE_VARIABLE: "slot-a"})
    other = _group("sleep 300", **{INSTANCE_VARIABLE: "slot-b"})
    for process, instance in ((server, "slot-a"), (orphan, "slot-a"), (other, "slot-b")):
        _until(
            lambda p=process.pid, i=instance: p in processes.with_environment(INSTANCE_VARIABLE, i),
            f"{process.pid} runs with {instance}",
        )
    try:
        started = time.monotonic()
        terminate_group(server.pid, timeout=20, instance="slot-a")
        assert time.monotonic() - started < 5  # not the timeout: everything went on SIGTERM
        assert orphan.wait(timeout=5) == -15 and _gone(server.pid)
        assert processes.is_running(other.pid)
    finally:
        other.kill()
        other.wait()


def test_stopping_a_process_that_is_gone_is_quick() -> None:
    done = subprocess.Popen(["true"], start_new_session=True)
    done.wait()
    started = time.monotonic()
    terminate_group(done.pid, timeout=5)
    assert time.monotonic() - started < 1


def _control(tmp_path: Path, bentoml: str = "", ports: tuple[int, ...] = (8000, 8001, 8002)) -> SlotControl:
    port, blue, green = ports
    health = {"blue": blue + 1, "green": green + 1} if ports != (8000, 8001, 8002) else {}
    layout = ProxyLayout(tmp_path / "proxy", port, {"blue": blue, "green": green}, health)
    return SlotControl(
        DeploymentRecord(tmp_path / "deploy" / "flights_delay"), layout, {"CT_X": "1"}, bentoml
    )


def test_a_recorded_slot_is_reported_and_stopped(tmp_path: Path) -> None:
    control = _control(tmp_path)
    server = _group("sleep 300 & sleep 300 & wait", **{INSTANCE_VARIABLE: "i1"})
    state = control.record.read()
    state.slots["green"] = SlotProcess(
        bento="flights_delay:v2", pid=server.pid, port=8002, started_at="", instance="i1"
    )
    control.record.save(state)
    assert control.serves("green") == "flights_delay:v2" and control.serves("blue") is None
    assert control.running("green") and not control.running("blue")
    assert control.pid("green") == server.pid and control.pid("blue") is None
    workers = _children(server.pid, 2)
    control.stop("blue")  # nothing there: nothing to do
    control.stop("green")
    assert _gone(server.pid, *workers)
    assert control.record.read().slots == {} and not control.running("green")


def test_health_without_a_proxy_reports_each_slots_process(tmp_path: Path) -> None:
    control = _control(tmp_path)
    done = subprocess.Popen(["true"])
    done.wait()
    state = control.record.read()
    state.slots["blue"] = SlotProcess(bento="flights_delay:v1", pid=done.pid, port=8001, started_at="")
    control.record.save(state)
    health = control.health()
    assert health["proxy"]["up"] is False and health["proxy"]["supervisor_pid"] is None
    assert health["slots"] == {
        "blue": {**EMPTY_SLOT_HEALTH, "bento": "flights_delay:v1", "process": "gone"},
        "green": EMPTY_SLOT_HEALTH,
    }


def test_workers_left_by_a_killed_server_are_reported_and_stopped_with_the_slot(tmp_path: Path) -> None:
    """`kill -9` of a slot's server leaves its workers serving (BentoML's do): the slot's health says
    so rather than passing for a healthy slot, and stopping it says it stopped them."""
    control = _control(tmp_path)
    server = _group("sleep 300 & sleep 300 & wait", **{INSTANCE_VARIABLE: "i1"})
    workers = _children(server.pid, 2)
    state = control.record.read()
    state.slots["green"] = SlotProcess(bento="b:2", pid=server.pid, port=8002, started_at="", instance="i1")
    control.record.save(state)
    assert control.health()["slots"]["green"]["problem"] is None  # its server runs
    server.kill()
    server.wait(timeout=10)
    health = control.health()["slots"]["green"]
    assert health["process"] == "gone"
    assert health["problem"] == (
        f"its server process {server.pid} is gone but 2 of its workers still serve, unsupervised "
        f"(pids {' '.join(map(str, sorted(workers)))}): not a healthy slot"
    )
    assert control.shutdown(who="ann") == {
        "green": "2 leftover worker processes of slot green (its server was gone)"
    }
    assert _gone(*workers)
    assert control.record.read().stopped_by == "ann"


def test_shutdown_stops_both_slots_and_never_a_process_that_reused_the_supervisor_s_pid(
    tmp_path: Path,
) -> None:
    """The recorded supervisor pid names a process that is not this folder's circusd (its pid was
    reused): it is left alone. (A real circusd is stopped: the rollout tests' `ct deploy stop`.)"""
    control = _control(tmp_path)
    blue, green, stranger = (_group("sleep 300") for _ in range(3))
    try:
        state = control.record.read()
        state.slots = {
            "blue": SlotProcess(bento="b:1", pid=blue.pid, port=8001, started_at=""),
            "green": SlotProcess(bento="b:2", pid=green.pid, port=8002, started_at=""),
        }
        state.proxy_supervisor_pid = stranger.pid
        control.record.save(state)
        stopped = control.shutdown()
        assert _gone(blue.pid, green.pid) and "proxy" not in stopped
        assert stranger.poll() is None, "a process that reused the pid is not the supervisor"
        assert control.record.read().slots == {}
    finally:
        stranger.kill()
        stranger.wait()


# A stand-in for `bentoml serve <bento> --host H --port P`: writes its environment to its output,
# answers /readyz on the port and /alive on CT_HEALTH_PORT, runs a worker in its own session that
# it stops on SIGTERM (as BentoML's circus does), and exits at once for the bento "broken:1".
STAND_IN = """
import http.server, json, os, signal, subprocess, sys, threading
bento, port = sys.argv[2], int(sys.argv[sys.argv.index("--port") + 1])
names = ["CT_SLOT", "CT_HEALTH_PORT", "CT_SLOT_INSTANCE", "CT_X", "CT_EXTRA", "CT_SLOT_ALLOCATOR"]
print("env " + json.dumps({n: os.environ.get(n) for n in names}), flush=True)
if bento == "broken:1":
    print("no such bento", flush=True)
    sys.exit(3)
worker = subprocess.Popen(["sleep", "300"], start_new_session=True)
print(f"worker {worker.pid}", flush=True)
def stop(*_):
    worker.terminate()
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path in ("/readyz", "/alive") else 404)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
health = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CT_HEALTH_PORT"])), Handler)
threading.Thread(target=health.serve_forever, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> str:
    path = tmp_path / "bin" / "bentoml"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{STAND_IN}")
    path.chmod(0o755)
    return str(path)


def _log(control: SlotControl, slot: str, word: str, timeout: float = 10) -> str:
    """The slot log's last line starting with `word` (waits for the copier to write it)."""
    path = control.record.folder / f"{slot}.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = [x for x in (path.read_text().splitlines() if path.exists() else []) if x.startswith(word)]
        if lines:
            return lines[-1].split(" ", 1)[1]
        assert time.monotonic() < deadline, f"no {word!r} line in {path}"
        time.sleep(0.05)


def test_a_slot_that_exits_at_once_is_an_error_naming_its_port(tmp_path: Path, stand_in: str) -> None:
    control = _control(tmp_path, stand_in, tuple(free_ports(3)))
    with pytest.raises(RuntimeError, match=f"slot on port {control.layout.slot_ports['blue']} exited with 3"):
        control.start("blue", "broken:1")
    assert _log(control, "blue", "no") == "such bento"  # its output is in the slot's log
    assert control.serves("blue") == "broken:1" and not control.running("blue")


@pytest.fixture
def control(tmp_path: Path, stand_in: str) -> Iterator[SlotControl]:
    made = _control(tmp_path, stand_in, (free_ports(1)[0], *_port_pairs()))
    try:
        yield made
    finally:
        made.shutdown()


def _port_pairs() -> tuple[int, int]:
    """Two slot ports whose next port (the health port here) is free too."""
    found: list[int] = []
    while len(found) < 2:
        port = free_ports(1)[0]
        if port < 65535 and _free(port + 1) and port not in found and port + 1 not in found:
            found.append(port)
    return found[0], found[1]


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_a_started_slot_is_recorded_logged_and_replaced(control: SlotControl) -> None:
    instance = control.start("green", "flights_delay:v1", {"CT_EXTRA": "yes"})
    first = control.record.read().slots["green"]
    assert first.instance == instance
    assert first.bento == "flights_delay:v1" and first.port == control.layout.slot_ports["green"]
    assert control.running("green") and first.pid == control.pid("green")
    env = json.loads(_log(control, "green", "env"))
    assert env["CT_SLOT"] == "green" and env["CT_HEALTH_PORT"] == str(control.layout.health_port("green"))
    assert env["CT_SLOT_INSTANCE"] == first.instance and len(first.instance) == 32
    assert (
        env["CT_X"] == "1" and env["CT_EXTRA"] == "yes" and env["CT_SLOT_ALLOCATOR"] in ("glibc", "tcmalloc")
    )
    worker = int(_log(control, "green", "worker"))
    control.start("green", "flights_delay:v2")  # the same slot: the old server and worker stop first
    assert _gone(first.pid, worker)
    second = control.record.read().slots["green"]
    assert second.bento == "flights_delay:v2" and second.instance != first.instance
    assert json.loads(_log(control, "green", "env"))["CT_EXTRA"] is None
    control.stop("green")
    assert _gone(second.pid) and control.serves("green") is None


@pytest.mark.slow
@requires_haproxy
def test_a_slot_started_behind_the_proxy_is_up_there_but_no_standby(control: SlotControl) -> None:
    control.ensure_proxy()
    supervisor = proxy_supervisor.supervisor_pid(control.layout)
    assert supervisor is not None and control.record.read().proxy_supervisor_pid == supervisor
    control.ensure_proxy()  # it answers: left as it is
    assert proxy_supervisor.supervisor_pid(control.layout) == supervisor
    control.start("blue", "flights_delay:v1")  # returns once HAProxy's own check sees it UP
    health = control.health()
    assert health["slots"]["blue"]["proxy_status"].startswith("UP") and health["slots"]["blue"]["weight"] == 0
    assert health["slots"]["blue"]["process"] == "running" and health["proxy"]["up"]
    assert "server blue_standby" in control.layout.config.read_text()
    assert proxy.saved_routing(control.layout).standby == set()  # not until it has served
    control.shutdown()
    assert _gone(supervisor) and not proxy_supervisor.answers(control.layout)
    assert control.health()["slots"]["blue"]["process"] is None


def test_a_stopped_or_stopping_deployment_says_so_and_no_proxy_fault(tmp_path: Path) -> None:
    control = _control(tmp_path, ports=tuple(free_ports(3)))
    assert "stopped" not in control.health() and "error" in control.health()["proxy"]  # never deployed
    control.record.save(DeployState(active="blue", stopping_since="2026-05-04T10:00:00+00:00"))
    health = control.health()
    assert health["stopped"] == (
        "stopping since 2026-05-04T10:00:00+00:00: `ct deploy stop` has not finished "
        "(run it again if it no longer runs)"
    )
    assert "error" not in health["proxy"] and health["proxy"]["up"] is False
    control.record.save(DeployState(stopped_at="2026-05-04T10:00:05+00:00"))
    assert control.health()["stopped"] == (
        "stopped at 2026-05-04T10:00:05+00:00 (`ct deploy stop`): nothing serves; "
        "`ct deploy start` deploys the champion"
    )
