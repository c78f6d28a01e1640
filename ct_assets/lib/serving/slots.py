"""Slot control: the processes of one pipeline's deployment. Each slot (blue, green) is a
`bentoml serve` process group on its own port, whose output goes to `<slot>.log` in the deployment
folder, rotated by size (`log_pipe`); the proxy is one HAProxy process in front of both, kept
running by its supervisor (`ct_assets.lib.serving.proxy_supervisor`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core import processes
from ct_assets.lib.core.processes import wait_until_answers
from ct_assets.lib.core.settings import REPO_ROOT
from ct_assets.lib.serving import proxy, proxy_supervisor
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.deployment_state import DeploymentRecord, DeployState, SlotProcess
from ct_assets.lib.serving.log_pipe import BACKUPS as LOG_BACKUPS
from ct_assets.lib.serving.log_pipe import MAX_BYTES as MAX_LOG_BYTES
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.request_gate import INSTANCE_VARIABLE
from ct_assets.lib.serving.traffic import WEIGHT_SCALE, Traffic


def terminate_group(pid: int, timeout: float, instance: str | None = None) -> None:
    """SIGTERM a process group (a slot's server, or HAProxy's master and worker), then SIGKILL what
    is still there after `timeout` seconds, including descendants in other sessions: BentoML starts
    its workers in their own session, and they outlive a SIGKILLed server. With `instance` (a
    slot's `CT_SLOT_INSTANCE`), also the processes that carry it but are no longer below `pid`:
    workers whose server already exited, which would otherwise hold the slot's port; those get
    their SIGTERM at once, having no server to pass it on."""
    tree = processes.descendants(pid)
    marked = processes.with_environment(INSTANCE_VARIABLE, instance) if instance else []
    orphans = [p for p in marked if p != pid and p not in tree]
    tree += orphans
    started = {p: processes.started_at(p) for p in tree}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for orphan in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGTERM)

    def remaining() -> list[int]:
        return [p for p in tree if processes.is_running(p, started[p])]

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child (a killed slot is a zombie)
        if not processes.is_running(pid) and not remaining():
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    processes.signal_tree(pid, signal.SIGKILL, remaining())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _log_pipe(path: Path) -> subprocess.Popen:
    """A copier of a slot's output into `path`, rotated by size (`log_pipe`)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ct_assets.lib.serving.log_pipe",
            str(path),
            str(MAX_LOG_BYTES),
            str(LOG_BACKUPS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=REPO_ROOT,
    )


class SlotControl:
    """Starts and stops the slots and the proxy, and records which bento each slot runs."""

    def __init__(
        self, record: DeploymentRecord, layout: ProxyLayout, slot_env: dict[str, str], bentoml: str
    ) -> None:
        self.record = record
        self.layout = layout
        self.slot_env = slot_env
        self.bentoml = bentoml

    def ensure_proxy(self) -> None:
        """Start the proxy under its supervisor unless it answers (or its supervisor brings it back
        within seconds); a new proxy gives the active slot all weight."""
        if proxy_supervisor.answers(self.layout):
            return
        running = proxy_supervisor.supervisor_pid(self.layout)
        if running is not None:
            if proxy_supervisor.wait_answers(self.layout, 5):
                return
            terminate_group(running, timeout=5)  # a supervisor whose proxy does not come back
        active = self.record.read().active
        pid = proxy_supervisor.start(
            self.layout, {s: WEIGHT_SCALE if s == active else 0 for s in proxy.SLOTS}
        )
        state = self.record.read()
        state.proxy_supervisor_pid = pid
        self.record.save(state)

    def start(self, slot: str, bento: str, extra_env: dict[str, str] | None = None) -> str:
        """Serve `bento` in `slot` (stopping what ran there), and wait until the proxy sees it up;
        returns the slot's instance id (`INSTANCE_VARIABLE`)."""
        self.stop(slot)
        Traffic(self.layout).no_standby(slot)
        port = self.layout.slot_ports[slot]
        instance = uuid.uuid4().hex
        env = {
            **os.environ,
            **self.slot_env,
            "CT_SLOT": slot,
            "CT_HEALTH_PORT": str(self.layout.health_port(slot)),
            INSTANCE_VARIABLE: instance,
            **(extra_env or {}),
        }
        env.update(allocator_env(env))
        log = _log_pipe(self.record.folder / f"{slot}.log")
        process = subprocess.Popen(
            [self.bentoml, "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log.stdin,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.stdin.close()  # the slot holds the pipe now; the copier ends when the slot's processes do
        state = self.record.read()
        state.slots[slot] = SlotProcess(
            bento=bento,
            pid=process.pid,
            port=port,
            started_at=datetime.now(UTC).isoformat(),
            instance=instance,
        )
        state.stopped_at = state.stopped_by = state.stopping_since = None
        self.record.save(state)
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", process, f"slot on port {port}", timeout=120)
        self.wait_up(slot)
        return instance

    def wait_up(self, slot: str, timeout: float = 20) -> None:
        """Wait until the proxy's own health check sees the slot UP (before it gets any traffic)."""
        if self.layout.socket.exists():
            proxy.wait_until_up(self.layout, slot, timeout)

    def stop(self, slot: str) -> str | None:
        """Stop `slot`'s processes and forget them; what ran (`slot blue`, or the workers its gone
        server left), or None when nothing did."""
        state = self.record.read()
        info = state.slots.pop(slot, None)
        self.record.save(state)
        if not info:
            return None
        running = processes.is_running(info.pid)
        leftover = [] if running else unsupervised_workers(info)
        terminate_group(info.pid, timeout=20, instance=info.instance)
        if running:
            return f"slot {slot}"
        if leftover:
            return f"{len(leftover)} leftover worker processes of slot {slot} (its server was gone)"
        return None

    def shutdown(self, who: str | None = None) -> dict[str, str]:
        """Stop both slots and the proxy. The record first says the deployment is stopping (so the
        watchdog takes no slot going down for a fault), then names nothing deployed and when and by
        `who` it was stopped (when it named a deployment, or something ran). Returns what was
        running, by slot name and `proxy` (see `stop`)."""
        state = self.record.read()
        held = state.holds_a_deployment
        if held:
            state.stopping_since = _now()
            self.record.save(state)
        stopped = {slot: what for slot in proxy.SLOTS if (what := self.stop(slot))}
        state = self.record.read()
        pid = proxy_supervisor.supervisor_pid(self.layout) or state.proxy_supervisor_pid
        if pid is not None and proxy_supervisor.is_supervisor(self.layout, pid):
            terminate_group(pid, timeout=5)
            stopped["proxy"] = "the proxy"
        shutil.rmtree(self.layout.sockets, ignore_errors=True)
        if held or stopped:
            self.record.save(DeployState(stopped_at=_now(), stopped_by=who))
        return stopped

    def health(self) -> dict[str, Any]:
        """The proxy's health (supervisor, HAProxy, restarts) and each slot's: its process, the
        proxy's view of it (status, weight, last check), and its problem: workers still serving,
        unsupervised, after their server died (HAProxy sees them UP). A stopped deployment (or one
        being stopped) says so under `stopped`, and its proxy carries no error: it is down by design."""
        state = self.record.read()
        stats = proxy.stats_if_up(self.layout)
        slots: dict[str, Any] = {}
        for slot in proxy.SLOTS:
            info = state.slots.get(slot)
            seen = stats.get(slot, {})
            slots[slot] = {
                "bento": info.bento if info else None,
                "process": None if not info else "running" if processes.is_running(info.pid) else "gone",
                "proxy_status": seen.get("status"),
                "weight": int(seen["weight"]) if seen.get("weight") else None,
                "last_check": f"{seen.get('check_status') or ''} {seen.get('check_desc') or ''}".strip()
                or None,
                "problem": _unsupervised_problem(info),
            }
        proxy_health = proxy_supervisor.status(self.layout)
        stopped = _stopped_note(state)
        if stopped is None:
            return {"proxy": proxy_health, "slots": slots}
        proxy_health.pop("error", None)
        return {"stopped": stopped, "proxy": proxy_health, "slots": slots}

    def serves(self, slot: str) -> str | None:
        """The bento `slot` runs (None when it is stopped)."""
        return self.record.read().bento_in(slot)

    def running(self, slot: str) -> bool:
        """Is `slot`'s server process running?"""
        info = self.record.read().slots.get(slot)
        return info is not None and processes.is_running(info.pid)

    def pid(self, slot: str) -> int | None:
        info = self.record.read().slots.get(slot)
        return info.pid if info else None


def unsupervised_workers(info: SlotProcess | None) -> list[int]:
    """The processes of a slot whose server is gone that still run: BentoML's workers outlive a
    SIGKILLed server and keep answering on its port, with nothing to restart or stop them. Empty
    while the server runs."""
    if info is None or info.instance is None or processes.is_running(info.pid):
        return []
    return [p for p in processes.with_environment(INSTANCE_VARIABLE, info.instance) if p != info.pid]


def _stopped_note(state: DeployState) -> str | None:
    """When and by whom `ct deploy stop` stopped the deployment, or that one is stopping (None
    while it runs)."""
    if state.stopping_since:
        return (
            f"stopping since {state.stopping_since}: `ct deploy stop` has not finished "
            "(run it again if it no longer runs)"
        )
    if not state.stopped_at:
        return None
    by = f" by {state.stopped_by}" if state.stopped_by else ""
    return (
        f"stopped at {state.stopped_at}{by} (`ct deploy stop`): nothing serves; "
        "`ct deploy start` deploys the champion"
    )


def _unsupervised_problem(info: SlotProcess | None) -> str | None:
    workers = unsupervised_workers(info)
    if info is None or not workers:
        return None
    return (
        f"its server process {info.pid} is gone but {len(workers)} of its workers still serve, "
        f"unsupervised (pids {' '.join(map(str, sorted(workers)))}): not a healthy slot"
    )
