"""Slot control: the processes of one pipeline's deployment. Each slot (blue, green) is a
`bentoml serve` process group on its own port; the proxy is one HAProxy process in front of both."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime

from ct_assets.lib.core import processes
from ct_assets.lib.core.processes import wait_until_answers
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.deployment_state import DeploymentRecord
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.traffic import WEIGHT_SCALE, Traffic

INSTANCE_VARIABLE = "CT_SLOT_INSTANCE"  # a slot process's environment marks every process it starts


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
        """Start the proxy unless it answers on its admin socket; the active slot gets all weight."""
        if self.layout.socket.exists():
            try:
                proxy.command(self.layout, "show info")
                return
            except OSError:
                pass
        active = self.record.read().get("active")
        process = proxy.start(self.layout, {s: WEIGHT_SCALE if s == active else 0 for s in proxy.SLOTS})
        state = self.record.read()
        state["proxy_pid"] = process.pid
        self.record.save(state)

    def start(self, slot: str, bento: str, extra_env: dict[str, str] | None = None) -> None:
        """Serve `bento` in `slot` (stopping what ran there), and wait until the proxy sees it up."""
        self.stop(slot)
        Traffic(self.layout).no_standby(slot)
        port = self.layout.slot_ports[slot]
        instance = uuid.uuid4().hex
        env = {
            **os.environ,
            **self.slot_env,
            "CT_SLOT": slot,
            INSTANCE_VARIABLE: instance,
            **(extra_env or {}),
        }
        env.update(allocator_env(env))
        log = (self.record.folder / f"{slot}.log").open("a")
        process = subprocess.Popen(
            [self.bentoml, "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        state = self.record.read()
        state["slots"][slot] = {
            "bento": bento,
            "pid": process.pid,
            "port": port,
            "started_at": datetime.now(UTC).isoformat(),
            "instance": instance,
        }
        self.record.save(state)
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", process, f"slot on port {port}", timeout=120)
        self.wait_up(slot)

    def wait_up(self, slot: str, timeout: float = 20) -> None:
        """Wait until the proxy's own health check sees the slot UP (before it gets any traffic)."""
        if not self.layout.socket.exists():
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proxy.server_stats(self.layout).get(slot, {}).get("status", "").startswith("UP"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the proxy never saw slot {slot} healthy")

    def stop(self, slot: str) -> None:
        state = self.record.read()
        info = state["slots"].pop(slot, None)
        self.record.save(state)
        if info:
            terminate_group(info["pid"], timeout=20, instance=info.get("instance"))

    def shutdown(self) -> None:
        """Stop both slots and the proxy."""
        for slot in proxy.SLOTS:
            self.stop(slot)
        pid = self.record.read().get("proxy_pid")
        if pid:
            terminate_group(pid, timeout=5)

    def serves(self, slot: str) -> str | None:
        """The bento `slot` runs (None when it is stopped)."""
        return self.record.read()["slots"].get(slot, {}).get("bento")

    def pid(self, slot: str) -> int | None:
        return self.record.read()["slots"].get(slot, {}).get("pid")
