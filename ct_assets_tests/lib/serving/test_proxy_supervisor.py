"""The supervised proxy: a real HAProxy under circus in front of two real HTTP servers on loopback.
Killed with SIGTERM or SIGKILL while a client sends requests, it is back within 2 s with the
weights and standby entries it had; the operator sees it in the health report and gets a one-line
error, not a traceback, while nothing answers on the admin socket. A supervisor killed under a
long-lived `ct` process is reaped, and a stale pid file does not keep the next one from starting."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.core import processes
from ct_assets.lib.serving import proxy, proxy_supervisor
from ct_assets.lib.serving.deployment_state import DeploymentRecord, DeployState, SlotBento, SlotProcess
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.slots import SlotControl, terminate_group
from ct_assets.lib.serving.traffic import Traffic
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.conftest import stand_in_slot

pytestmark = [requires_haproxy]


def test_supervisor_files_name_haproxy_and_a_fast_check(tmp_path: Path) -> None:
    layout = ProxyLayout(tmp_path, 8000, {"blue": 8001, "green": 8002})
    ini = proxy_supervisor.render_ini(layout)
    assert f"check_delay = {proxy_supervisor.CHECK_DELAY}" in ini and "respawn = True" in ini
    script = proxy_supervisor.render_script(layout)
    assert f"exec '{proxy.haproxy_binary()}' -db -f '{layout.config}'" in script


def test_routing_is_written_into_the_config_it_restarts_with(tmp_path: Path) -> None:
    layout = ProxyLayout(tmp_path, 8000, {"blue": 8001, "green": 8002})
    proxy.write_config(layout, proxy.Routing({"blue": 230, "green": 26}, {"blue"}))
    text = layout.config.read_text()
    assert "server blue 127.0.0.1:8001 weight 230" in text and "server green 127.0.0.1:8002 weight 26" in text
    assert "server blue_standby 127.0.0.1:8001 backup track serving/blue\n" in text
    assert "server green_standby 127.0.0.1:8002 backup track serving/green disabled" in text
    assert proxy.saved_routing(layout) == proxy.Routing({"blue": 230, "green": 26}, {"blue"})
    assert layout.routing.stat().st_mode & 0o777 == 0o600 and layout.config.stat().st_mode & 0o777 == 0o600


def test_a_dead_proxy_is_a_one_line_error(tmp_path: Path) -> None:
    layout = ProxyLayout(tmp_path, 8000, {"blue": 8001, "green": 8002})
    with pytest.raises(proxy.ProxyDown, match="the proxy on port 8000 is down") as caught:
        Traffic(layout).route({"blue": 1.0})
    assert isinstance(caught.value, RuntimeError) and "\n" not in str(caught.value)


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[SlotControl]:
    port, blue, green = free_ports(3)
    servers = [stand_in_slot("blue", blue), stand_in_slot("green", green)]
    record = DeploymentRecord(tmp_path / "deploy")
    state = record.read()
    state.active = "blue"
    record.save(state)
    control = SlotControl(
        record,
        ProxyLayout(tmp_path / "proxy", port, {"blue": blue, "green": green}, {"blue": blue, "green": green}),
        {},
        "",
    )
    control.ensure_proxy()
    try:
        yield control
    finally:
        control.shutdown()
        for server in servers:
            server.shutdown()


def test_a_proxy_in_a_deep_home_starts_and_its_sockets_go_with_it(tmp_path: Path) -> None:
    folder = tmp_path / ("a-home-nested-deeper-than-a-unix-socket-path-can-reach-" * 3) / "proxy"
    assert len(str(folder / "circus-pubsub.sock")) > 107
    port, blue, green = free_ports(3)
    record = DeploymentRecord(tmp_path / "deploy")
    control = SlotControl(record, ProxyLayout(folder, port, {"blue": blue, "green": green}), {}, "")
    control.ensure_proxy()
    try:
        assert proxy_supervisor.status(control.layout)["up"]
        assert len(str(control.layout.sockets / "circus-pubsub.sock")) <= 107
        assert control.layout.sockets.stat().st_mode & 0o777 == 0o700
    finally:
        control.shutdown()
    assert not control.layout.sockets.exists()


def test_sockets_folders_differ_between_homes(tmp_path: Path) -> None:
    first = ProxyLayout(tmp_path / "one" / "proxy", 8000, {"blue": 8001, "green": 8002})
    second = ProxyLayout(tmp_path / "two" / "proxy", 8000, {"blue": 8001, "green": 8002})
    assert first.sockets != second.sockets
    assert first.sockets == ProxyLayout(tmp_path / "one" / "proxy", 9000, {}).sockets


class Client:
    """GETs through the proxy in a loop (bounded), recording (time, ok) for each request."""

    def __init__(self, url: str, limit: int = 50_000) -> None:
        self.url, self.limit = url, limit
        self.answers: list[tuple[float, bool]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self.stop.is_set() and len(self.answers) < self.limit:
                try:
                    ok = client.get(f"{self.url}/predict").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.answers.append((time.monotonic(), ok))
                if not ok:
                    time.sleep(0.01)

    def __enter__(self) -> Client:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _weights(control: SlotControl) -> dict[str, int]:
    return {slot: int(row["weight"]) for slot, row in proxy.server_stats(control.layout).items()}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_proxy_is_back_within_two_seconds_with_its_weights(supervised, sig) -> None:
    control = supervised
    layout = control.layout
    Traffic(layout).canary("blue", "green", 0.1)
    proxy.set_standby(layout, "green", True)
    before = _weights(control)
    assert before == {"blue": 230, "green": 26}
    pid = proxy_supervisor.status(layout)["pid"]
    with Client(f"http://127.0.0.1:{layout.port}") as client:
        while len(client.answers) < 50:
            time.sleep(0.01)
        killed_at = time.monotonic()
        os.kill(pid, sig)
        assert processes.wait_gone(pid, 2)
        deadline = killed_at + 10
        while time.monotonic() < deadline and not any(
            ok and t > killed_at + 0.05 for t, ok in client.answers
        ):
            time.sleep(0.01)
        time.sleep(0.5)
    after_kill = [(t, ok) for t, ok in client.answers if t > killed_at]
    first_ok = next(t for t, ok in after_kill if ok and t > killed_at + 0.05)
    assert first_ok - killed_at < 2.0, first_ok - killed_at
    assert all(ok for t, ok in after_kill if t > first_ok), "requests failed after the proxy was back"
    assert _weights(control) == before
    assert "server green_standby" in layout.config.read_text()
    standby = {row["svname"]: row["status"] for row in _standby_rows(layout)}
    assert standby["green_standby"] != "MAINT", standby
    health = control.health()
    assert health["proxy"]["up"] and health["proxy"]["pid"] != pid and health["proxy"]["starts"] == 2
    assert health["proxy"]["last_restart"] is not None
    assert health["slots"]["blue"]["proxy_status"].startswith("UP")


def _standby_rows(layout: ProxyLayout) -> list[dict[str, str]]:
    import csv
    import io

    text = proxy.command(layout, "show stat").lstrip("# ")
    return [r for r in csv.DictReader(io.StringIO(text)) if r["svname"].endswith(proxy.STANDBY)]


@pytest.mark.slow
def test_the_proxy_outlives_its_starter_and_stops_with_the_deployment(supervised) -> None:
    control = supervised
    supervisor = proxy_supervisor.supervisor_pid(control.layout)
    assert supervisor is not None and os.getpgid(supervisor) != os.getpgid(0)  # its own session
    assert control.record.state_path.stat().st_mode & 0o777 == 0o600
    haproxy = proxy_supervisor.status(control.layout)["pid"]
    control.shutdown()
    assert processes.wait_gone(supervisor, 10) and processes.wait_gone(haproxy, 10)
    assert not proxy_supervisor.answers(control.layout)
    assert control.health()["proxy"]["up"] is False


@pytest.mark.slow
def test_operator_commands_say_in_one_line_that_the_proxy_is_down(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from ct_assets.lib.core import settings

    home = tmp_path / "home"
    record = DeploymentRecord(home / "deploy" / "flights_delay")
    slots = {
        s: SlotProcess(bento=f"b:{s}", pid=2**22 - 1, port=1, started_at="2013-02-01T00:00:00")
        for s in ("blue", "green")
    }
    record.save(DeployState(active="green", slots=slots, previous=SlotBento(slot="blue", bento="b:blue")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env["CT_HOME"] = str(home)
    ct = str(Path(sys.executable).parent / "ct")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ct, "deploy", *args],
            env=env,
            cwd=settings.REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    rollback = run("rollback", "--why", "test")
    assert rollback.returncode == 1 and "Traceback" not in rollback.stderr, rollback.stderr
    assert rollback.stderr.strip().startswith("ct: the proxy on port") and rollback.stderr.count("\n") == 1
    status = run("status")
    assert status.returncode == 0, status.stderr
    health = json.loads(status.stdout)["health"]
    assert health["proxy"]["up"] is False and health["proxy"]["supervisor_pid"] is None
    assert health["slots"]["green"]["process"] == "gone"


# A long-lived starter, as `ct deploy ops` is: starts the supervisor, prints circusd's pid, and lives
# until its stdin closes.
STARTER = """
import sys
from pathlib import Path
from ct_assets.lib.serving import proxy_supervisor
from ct_assets.lib.serving.proxy import ProxyLayout
folder, port, blue, green = sys.argv[1], *map(int, sys.argv[2:])
ports = {"blue": blue, "green": green}
print(proxy_supervisor.start(ProxyLayout(Path(folder), port, ports, ports), {"blue": 256, "green": 0}))
sys.stdout.flush()
sys.stdin.read()
"""


def _zombie_or_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_a_supervisor_killed_under_a_long_lived_starter_is_reaped_and_the_proxy_starts_again(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    port, blue, green = free_ports(3)
    server = stand_in_slot("blue", blue)
    ports = {"blue": blue, "green": green}
    layout = ProxyLayout(tmp_path / "proxy", port, ports, ports)
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(layout.folder), str(port), str(blue), str(green)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started = None
    try:
        circusd = int(starter.stdout.readline())
        haproxy = proxy_supervisor.status(layout)["pid"]
        os.kill(circusd, signal.SIGKILL)
        os.kill(haproxy, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _zombie_or_alive(circusd) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _zombie_or_alive(circusd), Path(f"/proc/{circusd}/stat").read_text()
        assert processes.wait_gone(haproxy, 5) and not proxy_supervisor.answers(layout)
        started = proxy_supervisor.start(layout, {"blue": 256, "green": 0})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/predict", timeout=2).text == "blue":
                    break
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/predict", timeout=2).text == "blue"
        assert proxy_supervisor.supervisor_pid(layout) == started
    finally:
        if started is not None:
            terminate_group(started, timeout=5)
        starter.stdin.close()
        starter.wait(timeout=10)
        server.shutdown()


@pytest.mark.slow
def test_a_pid_file_naming_another_process_does_not_keep_the_supervisor_from_starting(
    tmp_path: Path,
) -> None:
    port, blue, green = free_ports(3)
    layout = ProxyLayout(tmp_path / "proxy", port, {"blue": blue, "green": green})
    layout.folder.mkdir(parents=True)
    pidfile = proxy_supervisor.SupervisorFiles(layout.folder).pidfile
    pidfile.write_text(f"{os.getpid()}\n")  # a live process, but no circusd: a reused pid
    assert proxy_supervisor.supervisor_pid(layout) is None  # never to be stopped as the supervisor
    pid = proxy_supervisor.start(layout, {"blue": 256, "green": 0})
    try:
        assert proxy_supervisor.answers(layout) and int(pidfile.read_text()) == pid
        assert not proxy_supervisor.remove_stale_pidfile(layout)  # a live circusd's pid file stays
    finally:
        terminate_group(pid, timeout=5)


@pytest.mark.slow
def test_a_proxy_that_cannot_start_says_so_with_one_line_per_log(tmp_path: Path) -> None:
    import socket

    port, blue, green = free_ports(3)
    layout = ProxyLayout(tmp_path / "proxy", port, {"blue": blue, "green": green})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(RuntimeError) as caught:
            proxy_supervisor.start(layout, {"blue": 256, "green": 0}, timeout=10)
    lines = str(caught.value).splitlines()
    assert lines[0] == "haproxy did not start under circus" and len(lines) == 3, lines
    assert lines[1].startswith(f"  {layout.folder / 'circus.log'}: ")
    assert lines[2].startswith(f"  {layout.folder / 'haproxy.log'}: ") and "cannot bind" in lines[2]
    assert proxy_supervisor.supervisor_pid(layout) is None
