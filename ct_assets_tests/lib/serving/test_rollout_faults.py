"""Serving faults under traffic, with real `bentoml serve` slots behind a real HAProxy: a slot's
whole process group is SIGKILLed while clients send requests through the stable port.

(a) The canary slot dies during its health window: the rollout sees it DOWN (or its process gone),
ends the window early and rolls back with a reason naming the slot.
(b) The active slot dies in steady state after a switch, the previous slot still running at weight 0:
HAProxy's backup entries send traffic to it at once, and the watchdog makes the failover official
(state, audit entry, critical alert, dead slot stopped). Then the last slot dies too: no standby,
one critical alert, and the stable port answers 503.

In both, no request sent after detection fails, nor any sent after the kill: HAProxy replays them
on the other slot (`retry-on`, `http-buffer-request`, `redispatch`). The test prints how many failed
before detection (0 in 7 kills here, with 10 in-flight requests replayed). Only a request in flight
at the kill whose response headers HAProxy had already forwarded (`SD` in haproxy.log) cannot be
replayed, so at most one per client may fail, and only one sent before the kill.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ct_assets.lib.core import alerts, processes
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.deploy_lock import LOCK_FILE
from ct_assets.lib.serving.deployment_state import SlotBento
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment, HealthPolicy
from ct_assets.lib.serving.watchdog import Watchdog
from ct_assets_tests.bentos.test_service import DAYS, served  # noqa: F401 - the shared fixture
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.test_predictor import request_rows

pytestmark = [pytest.mark.slow, requires_haproxy]
# A long window: the kill must land inside it, and the rollout must not wait it out.
CANARY = HealthPolicy(
    canary_share=0.2, window_seconds=60, min_requests=3, max_p99_ms=2000, max_score_shift=0.5
)
QUICK = HealthPolicy(canary_share=0.2, window_seconds=3, min_requests=3, max_p99_ms=2000, max_score_shift=0.5)


class Clients:
    """`count` clients sending one-row requests to the stable port until stopped; every answer is
    kept with the time it was sent, its status and the slot that answered."""

    def __init__(self, url: str, rows: list[dict], count: int = 2) -> None:
        self.url, self.rows = url, rows
        self.answers: list[tuple[float, int, str | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def _run(self, offset: int) -> None:
        with httpx.Client(timeout=10) as client:
            n = offset
            while not self.stop.is_set() and len(self.answers) < 50_000:
                sent = time.time()
                try:
                    response = client.post(
                        f"{self.url}/predict", json={"rows": [self.rows[n % len(self.rows)]]}
                    )
                    slot = response.json().get("slot") if response.status_code == 200 else response.text[:200]
                    self.answers.append((sent, response.status_code, slot))
                except httpx.HTTPError as err:
                    self.answers.append((sent, 0, f"{type(err).__name__}: {err}"))
                n += 7

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def failed(self, since: float = 0.0, until: float = float("inf")) -> list:
        return [a for a in self.answers if a[1] != 200 and since <= a[0] < until]

    def after(self, since: float) -> list:
        return [a for a in self.answers if a[0] >= since]


@pytest.fixture(scope="module")
def live(served):  # noqa: F811 - pytest fixture injection
    """The champion's bento deployed to blue behind HAProxy (the candidate in both tests is the same
    bento: the faults are about processes, not models)."""
    spec, con, registry, root = served["spec"], served["con"], served["registry"], served["root"]
    record = served["record"]
    stable, blue, green, blue_check, green_check = free_ports(5)
    layout = ProxyLayout(
        root / "fault-proxy",
        stable,
        {"blue": blue, "green": green},
        {"blue": blue_check, "green": green_check},
    )
    env = {"CT_ONLINE_SNAPSHOT": str(root / "online"), "CT_PREDICTION_LOG": str(root / "log")}
    deploy = Deployment(root / "fault-deploy", layout, env, str(Path(sys.executable).parent / "bentoml"))
    rows = request_rows(con, spec, DAYS[-1], 100)
    expected = deploy_steps.reference_scores(con, spec, record, registry, rows, [DAYS[-1]])
    bento = str(served["bento"].tag)
    first = deploy.rollout(bento, (rows, expected), expected, QUICK, who="test")
    assert first.status == "switched", first.reasons
    yield {
        "deploy": deploy,
        "bento": bento,
        "rows": rows,
        "expected": expected,
        "url": f"http://127.0.0.1:{stable}",
    }
    deploy.shutdown()


def _kill_slot(deploy: Deployment, slot: str) -> tuple[int, float]:
    """SIGKILL the slot's process group and its workers' groups (BentoML starts each worker in a
    session of its own), as an OOM kill of the slot's container would: nothing of it answers."""
    pid = deploy.state().slots[slot].pid
    tree = processes.descendants(pid)
    assert tree, "bentoml serve has no worker processes"
    killed_at = time.time()
    processes.signal_tree(pid, signal.SIGKILL, tree)
    assert processes.wait_gone(pid, 5) and all(processes.wait_gone(p, 5) for p in tree)
    return pid, killed_at


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _entries(deploy: Deployment) -> dict[str, str]:
    """HAProxy's status of every server entry, backups included."""
    text = proxy.command(deploy.layout, "show stat").lstrip("# ")
    return {
        r["svname"]: r["status"] for r in csv.DictReader(io.StringIO(text)) if r["pxname"] == proxy.BACKEND
    }


def _haproxy_down(deploy: Deployment, slot: str) -> float:
    """Wait until HAProxy marks `slot` DOWN; returns when it was first seen DOWN."""
    _wait(
        lambda: proxy.server_stats(deploy.layout)[slot]["status"].startswith("DOWN"),
        10,
        f"HAProxy to mark {slot} DOWN",
    )
    return time.time()


def _failures(
    clients: Clients, label: str, killed_at: float, down_at: float, detected_at: float, how: str
) -> list:
    """Print what the clients saw around a kill; return the requests that failed after detection."""
    before, after = clients.failed(killed_at, detected_at), clients.failed(detected_at)
    print(
        f"\n{label}: {len(clients.answers)} requests; HAProxy DOWN after {down_at - killed_at:.2f} s, "
        f"{how} after {detected_at - killed_at:.2f} s; failed before detection {len(before)}, after "
        f"{len(after)}, in all {len(clients.failed())} {clients.failed()}"
    )
    return after


def _assert_no_loss(clients: Clients, killed_at: float, after_detection: list) -> None:
    """No request sent after detection failed, nor any sent after the kill (retried on the other
    slot); only a request in flight at the kill, cut mid-response, may be lost: one per client."""
    assert after_detection == [], after_detection[:5]
    assert clients.failed(killed_at) == [], clients.failed(killed_at)[:5]
    lost = clients.failed()
    assert len(lost) <= len(clients.threads) and all(killed_at - 2 < a[0] for a in lost), lost


def test_a_canary_killed_under_traffic_is_rolled_back_with_no_failed_request(live) -> None:
    deploy, bento, rows, expected = (live[k] for k in ("deploy", "bento", "rows", "expected"))
    assert deploy.state().active == "blue"
    outcome: dict = {}
    with Clients(live["url"], rows) as clients:
        rollout = threading.Thread(
            target=lambda: outcome.update(
                result=deploy.rollout(bento, (rows, expected), expected, CANARY, who="test")
            )
        )
        rollout.start()
        # Wait for the canary to take real traffic, then kill its whole process group.
        _wait(lambda: sum(1 for a in clients.answers if a[2] == "green") >= 5, 120, "the canary to answer")
        # An unproven candidate is nobody's standby: its backup entry stays disabled.
        assert _entries(deploy)["green_standby"] == "MAINT" and _entries(deploy)["blue_standby"] == "UP"
        _, killed_at = _kill_slot(deploy, "green")
        down_at = _haproxy_down(deploy, "green")
        rollout.join(timeout=60)
        assert not rollout.is_alive(), "the rollout waited out its window instead of reacting"
        result = outcome["result"]
        detected_at = result.health.down.detected_at
        time.sleep(2)  # traffic keeps flowing after the rollback
    after = _failures(
        clients, "(a) canary kill", killed_at, down_at, detected_at, "rollout detected and rolled back"
    )
    assert result.status == "rolled_back"
    assert "slot green died" in result.reasons[0] and detected_at - killed_at < 5, result.reasons
    assert result.health.down.reason == result.reasons[0]
    _assert_no_loss(clients, killed_at, after)
    assert {a[2] for a in clients.after(detected_at + 0.5)} == {"blue"}
    state = deploy.state()
    assert state.active == "blue" and "green" not in state.slots
    last = deploy.audit_log()[-1]
    assert last["action"] == "rollback" and last["automatic"] and "slot green" in last["why"]
    assert proxy.server_stats(deploy.layout)["green"]["weight"] == "0"


# A second rollout of the same deployment, from another process (as a second `ct deploy start` is).
SECOND_ROLLOUT = """
import pickle, sys
from ct_assets.lib.serving.rollout import Deployment, DeploymentBusy
args = pickle.loads(bytes.fromhex(sys.argv[1]))
deploy = Deployment(args["folder"], args["layout"], args["env"], args["bentoml"])
try:
    result = deploy.rollout(
        args["bento"], args["compatibility"], args["expected"], args["policy"], who="second"
    )
except DeploymentBusy as err:
    print(err)
    sys.exit(1)
print(result.status)
"""


def test_c_a_second_rollout_during_a_canary_is_refused_and_the_first_completes(live) -> None:
    deploy, bento, rows, expected = (live[k] for k in ("deploy", "bento", "rows", "expected"))
    assert deploy.state().active == "blue"
    before = len(deploy.audit_log())
    policy = HealthPolicy(
        # a window long enough for the second rollout's interpreter to start on a loaded machine
        canary_share=0.2,
        window_seconds=20,
        min_requests=3,
        max_p99_ms=2000,
        max_score_shift=0.5,
    )
    outcome: dict = {}
    with Clients(live["url"], rows):
        first = threading.Thread(
            target=lambda: outcome.update(
                result=deploy.rollout(bento, (rows, expected), expected, policy, who="first")
            )
        )
        first.start()
        _wait(lambda: "canary" in [e["action"] for e in deploy.audit_log()[before:]], 120, "the canary")
        canary_pid = deploy.state().slots["green"].pid
        args = {
            "folder": deploy.folder,
            "layout": deploy.layout,
            "env": deploy.slot_env,
            "bentoml": deploy.bentoml,
            "bento": bento,
            "compatibility": (rows, expected),
            "expected": expected,
            "policy": policy,
        }
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-c", SECOND_ROLLOUT, pickle.dumps(args).hex()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        refused_in = time.monotonic() - started
        assert first.is_alive(), "the canary window ended before the second rollout was tried"
        first.join(timeout=120)
    assert second.returncode == 1, (second.stdout, second.stderr)
    assert second.stdout.strip() == (
        f"the fault-deploy deployment is busy: pid {os.getpid()} holds it since "
        f"{_lock_since(deploy)} (rollout of {bento} by first); rollout of {bento} refused, "
        "try again when that ends"
    )
    assert refused_in < 30  # at once: no canary of its own, no waiting for the first
    result = outcome["result"]
    assert result.status == "switched", (result.reasons, result.health)
    state = deploy.state()
    assert state.active == "green" and state.slots["green"].pid == canary_pid
    actions = [e["action"] for e in deploy.audit_log()[before:]]
    assert actions == ["rollout_started", "canary", "switch"]
    # back to blue active, as the next test expects
    assert deploy.rollback_to_previous(who="test", why="blue again").slot == "blue"


def _lock_since(deploy: Deployment) -> str:
    """When the last holder took the deployment's lock (the lock file keeps its holder's record)."""
    return json.loads((deploy.folder / LOCK_FILE).read_text())["since"]


def test_b_the_active_slot_killed_under_traffic_fails_over_to_the_standby(live) -> None:
    deploy, bento, rows, expected = (live[k] for k in ("deploy", "bento", "rows", "expected"))
    with Clients(live["url"], rows) as clients:
        switched = deploy.rollout(bento, (rows, expected), expected, QUICK, who="test")
        assert switched.status == "switched", (switched.reasons, switched.health)
    state = deploy.state()
    assert state.active == "green" and "blue" in state.slots  # blue stays up at weight 0
    assert proxy.server_stats(deploy.layout)["blue"]["weight"] == "0"
    assert _entries(deploy)["blue_standby"] == "UP"  # blue served before: it is the standby
    sent: list[alerts.Alert] = []
    watchdog = Watchdog(deploy, send=sent.append, pipeline="flights_delay", interval=0.2)
    assert watchdog.check() is None  # a healthy active slot: nothing to do
    with Clients(live["url"], rows) as clients, watchdog:
        _wait(lambda: len(clients.answers) >= 20, 30, "traffic")
        failed_bento = deploy.state().slots["green"].bento
        pid, killed_at = _kill_slot(deploy, "green")
        down_at = _haproxy_down(deploy, "green")
        try:
            _wait(lambda: watchdog.events or watchdog.errors, 10, "the watchdog to fail over")
        except AssertionError:
            stats = {k: (v["status"], v["weight"]) for k, v in proxy.server_stats(deploy.layout).items()}
            raise AssertionError(f"no failover: {stats} {deploy.state()} {[str(a) for a in sent]}") from None
        assert not watchdog.errors, watchdog.errors
        failover_at = time.time()
        # Traffic after both the failover and HAProxy's verdict (+0.3 s, checked below).
        settled = max(failover_at, down_at + 0.3)
        _wait(lambda: len(clients.after(settled)) >= 50, 30, "traffic after the failover")
    after = _failures(clients, "(b) active kill", killed_at, down_at, down_at, "the standby took over")
    print(f"    watchdog failover within {failover_at - killed_at:.2f} s")
    _assert_no_loss(clients, killed_at, after)
    # Between HAProxy's verdict and the watchdog, the backup entry already served from blue.
    assert {a[2] for a in clients.after(down_at + 0.3)} == {"blue"}
    result = watchdog.events[0]
    assert result.status == "failed_over" and result.slot == "blue"
    state = deploy.state()
    assert state.active == "blue" and state.previous == SlotBento(slot="green", bento=failed_bento)
    assert "green" not in state.slots
    stats = proxy.server_stats(deploy.layout)
    assert stats["blue"]["weight"] != "0" and stats["green"]["weight"] == "0"
    entry = deploy.audit_log()[-1]
    assert entry["action"] == "failover" and entry["who"] == "watchdog" and entry["automatic"]
    assert entry["failed_slot"] == "green" and "active slot green" in entry["why"] and "DOWN" in entry["why"]
    assert len(sent) == 1 and sent[0].tier == "critical" and "slot blue" in sent[0].action
    assert f"process {pid} is gone" in sent[0].cause
    assert watchdog.check() is None  # blue is active and UP: nothing more to do

    # Now the last slot dies too, with no standby left: the watchdog cannot fail over. It raises one
    # critical alert and one audit entry (not one per tick), and the stable port answers 503.
    _kill_slot(deploy, "blue")
    _haproxy_down(deploy, "blue")
    assert watchdog.check() is None and watchdog.check() is None
    assert len(sent) == 2 and sent[1].tier == "critical" and "no healthy standby" in sent[1].cause
    assert deploy.audit_log()[-1]["action"] == "failover_impossible"
    assert httpx.post(f"{live['url']}/predict", json={"rows": rows[:1]}, timeout=30).status_code == 503


def test_d_a_planned_stop_under_the_watchdog_is_audited_and_raises_no_alarm(live) -> None:
    """`ct deploy stop` while `ct deploy ops` watches and clients send requests: the active slot going
    down is the stop's doing, not a fault, so no failover, no alert; the stop itself is audited."""
    deploy, bento, rows, expected = (live[k] for k in ("deploy", "bento", "rows", "expected"))
    with Clients(live["url"], rows):  # serving again (the last test killed both), with a proven standby
        for _ in range(2):
            result = deploy.rollout(bento, (rows, expected), expected, QUICK, who="test")
            assert result.status == "switched", result.reasons
    state = deploy.state()
    assert state.previous is not None and state.previous.slot in state.slots
    before = len(deploy.audit_log())
    sent: list[alerts.Alert] = []
    watchdog = Watchdog(deploy, send=sent.append, pipeline="flights_delay", interval=0.02)
    with Clients(live["url"], rows) as clients, watchdog:
        _wait(lambda: len(clients.answers) >= 20, 30, "traffic")
        stopped = deploy.shutdown(who="ann", why="planned maintenance")
        time.sleep(1)  # ticks on the stopped deployment
    assert sorted(stopped) == ["blue", "green", "proxy"]
    assert sent == [] and watchdog.events == []
    entries = deploy.audit_log()[before:]
    assert [e["action"] for e in entries] == ["deploy_stop"]
    (entry,) = entries
    assert (entry["who"], entry["why"], entry["active"]) == ("ann", "planned maintenance", state.active)
    assert entry["stopped"] == list(stopped.values()) and entry["bentos"] == {"blue": bento, "green": bento}
    final = deploy.state()
    assert final.stopped_at and final.stopped_by == "ann" and final.active is None


def _kill_server_only(deploy: Deployment, slot: str) -> tuple[int, list[int]]:
    """SIGKILL the slot's `bentoml serve` alone (`kill -9 <pid>`): its workers keep serving."""
    pid = deploy.state().slots[slot].pid
    workers = processes.descendants(pid)
    assert workers, "bentoml serve has no worker processes"
    os.kill(pid, signal.SIGKILL)
    assert processes.wait_gone(pid, 5) and all(processes.is_running(w) for w in workers)
    return pid, workers


def test_e_a_slot_whose_server_was_killed_is_reported_restarted_and_failed_over(live) -> None:
    """`kill -9` of a slot's server: status says its workers serve unsupervised; a rollback onto it
    restarts it first; the watchdog fails over from an active slot in that state and stops them."""
    deploy, bento, rows, expected = (live[k] for k in ("deploy", "bento", "rows", "expected"))
    with Clients(live["url"], rows):  # the last test stopped everything: serving again, with a standby
        for _ in range(2):
            result = deploy.rollout(bento, (rows, expected), expected, QUICK, who="test")
            assert result.status == "switched", result.reasons
    active, standby = deploy.state().active, deploy.state().previous.slot
    pid, workers = _kill_server_only(deploy, standby)
    health = deploy.health()["slots"][standby]
    assert health["process"] == "gone" and health["proxy_status"].startswith("UP")  # HAProxy is fooled
    assert health["problem"].startswith(f"its server process {pid} is gone but {len(workers)} of its workers")
    assert "still serve, unsupervised" in health["problem"]

    with Clients(live["url"], rows) as clients:
        rolled = deploy.rollback_to_previous(who="ann", why="bad scores")
        assert rolled.slot == standby
        assert rolled.reasons == [
            "bad scores",
            f"slot {standby} restarted: its server process {pid} was gone",
        ]
        assert all(processes.wait_gone(w, 10) for w in workers)
        assert deploy.slots.running(standby) and deploy.health()["slots"][standby]["problem"] is None
        assert deploy.audit_log()[-1]["restarted"] == rolled.reasons[1]

        # the slot now active loses its server: the watchdog fails over to the other one
        pid, workers = _kill_server_only(deploy, standby)
        sent: list[alerts.Alert] = []
        result = Watchdog(deploy, send=sent.append, pipeline="flights_delay").check()
        assert result is not None and (result.status, result.slot) == ("failed_over", active)
        assert all(processes.wait_gone(w, 10) for w in workers)
        settled = time.time() + 0.5
        _wait(lambda: len(clients.after(settled)) >= 20, 30, "traffic after the failover")
    assert {a[2] for a in clients.after(settled)} == {active}
    assert len(sent) == 1 and f"the server process {pid} of active slot {standby}" in sent[0].cause
    entry = deploy.audit_log()[-1]
    assert (
        entry["action"] == "failover" and entry["failed_slot"] == standby and "unsupervised" in entry["why"]
    )
