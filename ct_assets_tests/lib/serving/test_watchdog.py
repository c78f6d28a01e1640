"""The watchdog's judgement, against a stand-in HAProxy admin socket and a real deployment record,
audit log and slot process: it fails over only on HAProxy's DOWN verdict and only to the proven
standby (the bento that served before the switch, up), says once when it cannot, and its thread
outlives a proxy that does not answer. The failover of real BentoML slots under traffic is
`test_rollout_faults` (slow)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ct_assets.lib.core import processes
from ct_assets.lib.core.alerts import Alert
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.deployment_state import DeployState, SlotBento
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.request_gate import INSTANCE_VARIABLE
from ct_assets.lib.serving.rollout import Deployment
from ct_assets.lib.serving.watchdog import Watchdog
from ct_assets_tests.lib.serving.admin_socket import AdminSocket

OLD, NEW = "flights_delay:v1", "flights_delay:v2"


class World:
    """A deployment whose green slot (a real process) serves NEW and whose blue slot kept OLD."""

    def __init__(self, tmp_path: Path) -> None:
        layout = ProxyLayout(tmp_path / "proxy", 8000, {"blue": 8001, "green": 8002})
        self.admin = AdminSocket(layout)
        self.deployment = Deployment(tmp_path / "deploy" / "flights_delay", layout, {}, "")
        self.servers = {slot: self._process() for slot in proxy.SLOTS}
        self.alerts: list[Alert] = []
        self.save(
            active="green",
            slots={
                "blue": {"bento": OLD, "pid": self.servers["blue"].pid},
                "green": {"bento": NEW, "pid": self.servers["green"].pid},
            },
            previous={"slot": "blue", "bento": OLD},
        )
        self.admin.set("green", weight="256")
        self.admin.set("blue_standby", status="UP")

    @staticmethod
    def _process() -> subprocess.Popen:
        return subprocess.Popen(["sleep", "300"], start_new_session=True)

    def save(self, **state: Any) -> None:
        """Change fields of the deployment's state (slots as {slot: {bento, pid}})."""
        slots = {
            slot: {"port": self.deployment.layout.slot_ports[slot], "started_at": "", **process}
            for slot, process in state.get("slots", {}).items()
        }
        changed = {**state, **({"slots": slots} if "slots" in state else {})}
        self.deployment.record.save(
            DeployState.model_validate({**self.deployment.state().model_dump(), **changed})
        )

    def watchdog(self, **options: Any) -> Watchdog:
        return Watchdog(self.deployment, send=self.alerts.append, **options)

    def down(self, slot: str, status: str = "DOWN") -> None:
        self.admin.set(slot, status=status, check_status="L4CON", check_desc="Connection refused")

    def actions(self) -> list[str]:
        return [e["action"] for e in self.deployment.audit_log()]

    def close(self) -> None:
        self.admin.close()
        for server in self.servers.values():
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_a_healthy_active_slot_is_left_alone(world: World) -> None:
    watchdog = world.watchdog()
    assert watchdog.check() is None
    assert world.admin.sent() == [] and world.alerts == [] and world.actions() == []


def test_nothing_deployed_is_not_even_looked_at(world: World) -> None:
    world.save(active=None)
    assert world.watchdog().check() is None
    assert world.admin.commands == []  # no question to the proxy


@pytest.mark.parametrize("status", ["UP 1/3", "NOLB", "MAINT", "DRAIN", "no check", ""])
def test_only_haproxys_down_verdict_counts(world: World, status: str) -> None:
    """A slot going down (`UP 1/3`), in maintenance or draining is not dead: no failover."""
    world.admin.set("green", status=status)
    assert world.watchdog().check() is None
    assert world.admin.sent() == [] and world.alerts == []


def test_a_dead_active_slot_fails_over_to_the_proven_standby(world: World) -> None:
    dead_pid = world.servers["green"].pid
    world.down("green")
    watchdog = world.watchdog(owner="on-call team")
    result = watchdog.check()
    assert result is not None and (result.status, result.slot, result.bento) == ("failed_over", "blue", OLD)
    assert watchdog.events == [result]
    state = world.deployment.state()
    assert state.active == "blue" and state.previous == SlotBento(slot="green", bento=NEW)
    assert "green" not in state.slots and state.slots["blue"].bento == OLD
    # All traffic to blue, through the proxy's runtime API; the dead slot's process is stopped.
    assert world.admin.sent("set server serving/blue weight") == ["set server serving/blue weight 256"]
    assert world.admin.rows["green"]["weight"] == "0" and world.admin.rows["blue_standby"]["status"] == "UP"
    assert world.servers["green"].wait(timeout=30) is not None and not processes.is_running(dead_pid)
    assert processes.is_running(world.servers["blue"].pid)
    (entry,) = world.deployment.audit_log()
    assert entry["action"] == "failover" and entry["who"] == "watchdog" and entry["automatic"]
    assert (entry["slot"], entry["bento"], entry["failed_slot"], entry["failed_bento"]) == (
        "blue",
        OLD,
        "green",
        NEW,
    )
    (alert,) = world.alerts
    assert alert.tier == "critical" and alert.pipeline == "flights_delay" and alert.owner == "on-call team"
    assert alert.cause == (
        f"active slot green ({NEW}) is DOWN (last health check L4CON Connection refused); "
        f"its server process {dead_pid} is running"
    )
    assert alert.cause == entry["why"]
    assert f"slot blue ({OLD}) now serves all traffic" in alert.action
    assert f"the failed bento {NEW} is stopped" in alert.action and "green.log" in alert.action
    world.admin.set("blue", status="UP")
    assert watchdog.check() is None  # blue is active and up: nothing more to do
    assert len(world.alerts) == 1


def test_a_deployment_being_stopped_is_no_fault(world: World) -> None:
    """`ct deploy stop` marks the deployment stopping before its slots go down, and holds its lock:
    the watchdog neither fails over nor alerts, whichever it sees."""
    world.down("green")
    watchdog = world.watchdog()
    with world.deployment.lock("stop", "ann"):  # a stop in this process, in another thread
        outcome: list = []
        looker = threading.Thread(target=lambda: outcome.append(watchdog.check()))
        looker.start()
        looker.join(timeout=30)
    assert outcome == [None]
    world.save(stopping_since="2026-05-04T10:00:00+00:00")  # a stop that died half-way
    assert watchdog.check() is None
    assert world.alerts == [] and world.actions() == [] and world.admin.sent() == []
    assert world.deployment.state().active == "green" and processes.is_running(world.servers["green"].pid)


def test_an_active_slot_whose_server_is_gone_is_failed_over_and_its_workers_stopped(world: World) -> None:
    """`kill -9` of the active slot's server: its workers still answer, so HAProxy sees it UP, but
    nothing supervises them. The watchdog fails over to the standby and stops them."""
    worker = subprocess.Popen(
        ["sleep", "300"], start_new_session=True, env={**os.environ, INSTANCE_VARIABLE: "green-1"}
    )
    try:
        server = world.servers["green"]
        world.save(slots={**_slots(world), "green": {"bento": NEW, "pid": server.pid, "instance": "green-1"}})
        server.kill()
        server.wait(timeout=10)
        assert world.admin.rows["green"]["status"].startswith("UP")
        result = world.watchdog().check()
        assert result is not None and (result.status, result.slot) == ("failed_over", "blue")
        assert worker.wait(timeout=30) is not None  # stopped with the slot
    finally:
        if worker.poll() is None:
            worker.kill()
    (alert,) = world.alerts
    assert alert.cause == (
        f"the server process {server.pid} of active slot green ({NEW}) is gone; "
        "1 of its worker processes still serve, unsupervised"
    )
    assert world.actions() == ["failover"] and world.deployment.state().active == "blue"


def _slots(world: World) -> dict[str, dict[str, Any]]:
    return {
        slot: {"bento": process.bento, "pid": process.pid}
        for slot, process in world.deployment.state().slots.items()
    }


def test_a_slot_coming_back_up_is_still_down(world: World) -> None:
    """`DOWN 1/2`: one good check of the two it needs; HAProxy still routes around it."""
    world.down("green", "DOWN 1/2")
    assert world.watchdog().check().status == "failed_over"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"previous": None}, "a first deployment: blue never served"),
        ({"previous": {"slot": "blue", "bento": "flights_delay:v0"}}, "blue now runs another bento"),
        ({"previous": {"slot": "green", "bento": NEW}}, "the previous slot is the dead one"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_candidate_is_never_taken_for_the_standby(world: World, change: dict, why: str) -> None:
    world.save(**change)
    world.down("green")
    watchdog = world.watchdog()
    assert watchdog.check() is None, why
    state = world.deployment.state()
    assert state.active == "green" and state.slots["green"].bento == NEW
    assert world.admin.sent() == [] and processes.is_running(world.servers["green"].pid)
    (alert,) = world.alerts
    assert alert.tier == "critical"
    assert "active slot green" in alert.cause and "no healthy standby slot" in alert.cause
    assert "stable port answers 503" in alert.cause and "ct deploy rollback" in alert.action
    assert world.actions() == ["failover_impossible"]


@pytest.mark.parametrize("standby", ["DOWN", "MAINT", None])
def test_a_standby_that_is_not_up_is_no_standby(world: World, standby: str | None) -> None:
    world.down("green")
    if standby is None:
        world.admin.rows.pop("blue")  # the proxy does not list it at all
    else:
        world.admin.set("blue", status=standby)
    assert world.watchdog().check() is None
    assert world.deployment.state().active == "green" and world.admin.sent() == []
    assert len(world.alerts) == 1 and world.actions() == ["failover_impossible"]


def test_it_says_once_that_it_cannot_fail_over_until_the_slot_recovers(world: World) -> None:
    world.save(previous=None)
    watchdog = world.watchdog()
    world.down("green")
    for _ in range(5):
        assert watchdog.check() is None
    assert len(world.alerts) == 1 and world.actions() == ["failover_impossible"]
    world.admin.set("green", status="UP")
    assert watchdog.check() is None
    world.down("green")  # down again: a new incident, a new alert
    assert watchdog.check() is None
    assert len(world.alerts) == 2 and world.actions() == ["failover_impossible"] * 2


def test_the_cause_says_whether_the_slot_process_is_gone(world: World) -> None:
    server = world.servers["green"]
    server.kill()
    server.wait(timeout=10)
    world.down("green")
    world.save(previous=None)
    world.watchdog().check()
    assert world.alerts[0].cause.startswith(
        f"active slot green ({NEW}) is DOWN (last health check L4CON Connection refused); "
        f"its server process {server.pid} is gone; "
    )


def test_a_slot_without_a_recorded_check_is_still_named(world: World) -> None:
    world.save(previous=None)
    world.admin.set("green", status="DOWN", check_status="", check_desc="")
    world.watchdog(pipeline="other").check()
    (alert,) = world.alerts
    assert alert.pipeline == "other"
    pid = world.servers["green"].pid
    assert alert.cause.startswith(
        f"active slot green ({NEW}) is DOWN (last health check ?); its server process {pid} is running; "
    )


def test_its_thread_fails_over_and_stops(world: World) -> None:
    with world.watchdog(interval=0.05) as watchdog:
        world.down("green")
        deadline = time.monotonic() + 10
        while not watchdog.events and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [e.status for e in watchdog.events] == ["failed_over"] and watchdog.errors == []
    assert not watchdog._thread.is_alive()
    assert world.deployment.state().active == "blue"


def test_its_thread_outlives_a_proxy_that_does_not_answer(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.admin.close()  # the proxy is restarting: nothing on its admin socket
    with (
        caplog.at_level(logging.WARNING, logger="ct_assets.lib.serving.watchdog"),
        world.watchdog(interval=0.005) as watchdog,
    ):
        deadline = time.monotonic() + 20
        while len(watchdog.errors) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # dozens of failed ticks more
        alive = watchdog._thread.is_alive()
    assert alive and len(watchdog.errors) == 100  # the last hundred are kept
    assert watchdog.errors[-1].startswith("ProxyDown: the proxy on port 8000 is down")
    assert len(caplog.records) == 1  # the same problem is logged once, not once per tick
    assert "watchdog check failed: ProxyDown" in caplog.records[0].getMessage()
    assert world.alerts == [] and world.deployment.state().active == "green"
