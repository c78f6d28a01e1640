"""Blue-green deployment with a canary, on one machine: two `bentoml serve` slots behind HAProxy.

A rollout starts the new bento in the idle slot; before any traffic it must reproduce the
evaluation's scores on the holdout (inference compatibility); then it takes a canary share of real
traffic for a health window (error rate from the proxy's counters, p99 latency and the score
distribution from the slot's prediction log); then all traffic switches to it, or it is rolled
back automatically with the reason. Every step is written to the audit log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core.processes import wait_until_answers
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.proxy import ProxyLayout

WEIGHT_SCALE = 256  # HAProxy weights run 0..256


@dataclass(frozen=True)
class HealthPolicy:
    canary_share: float = 0.1
    window_seconds: float = 20.0
    min_requests: int = 20
    max_error_rate: float = 0.01
    max_p99_ms: float = 250.0
    max_score_shift: float = 0.25  # Hellinger distance of canary scores from the holdout's


@dataclass
class RolloutResult:
    status: str  # "switched" | "rolled_back" | "awaiting_approval" | "failed_over"
    slot: str
    bento: str
    reasons: list[str] = field(default_factory=list)
    health: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _score_hellinger(a: list[float], b: list[float], bins: int = 10) -> float:
    import numpy as np

    if not a or not b:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    p, _ = np.histogram(np.clip(a, 0, 1), edges)
    q, _ = np.histogram(np.clip(b, 0, 1), edges)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sqrt(max(0.0, 1 - np.sum(np.sqrt(p * q)))))


INSTANCE_VARIABLE = "CT_SLOT_INSTANCE"  # a slot process's environment marks every process it starts


def _terminate_group(pid: int, timeout: float, instance: str | None = None) -> None:
    """SIGTERM a process group (a slot's server, or HAProxy's master and worker), then SIGKILL what
    is still there after `timeout` seconds, including descendants in other sessions: BentoML starts
    its workers with their own session, and they outlive a SIGKILLed server (seen here: two orphan
    workers kept answering on the slot's port). With `instance` (a slot's `CT_SLOT_INSTANCE`), also
    the processes that carry it but are no longer below `pid`: workers whose server already exited
    (seen in CI: a candidate that failed to start left a worker holding its port, so the next start
    on that slot could not bind); those get their SIGTERM at once, having no server to pass it on."""
    from ct_assets.lib.core import processes

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


def active_bento(state: dict[str, Any]) -> str | None:
    """The bento tag the deployment's active slot serves (None when nothing is deployed)."""
    active = state.get("active")
    return (state.get("slots") or {}).get(active, {}).get("bento") if active else None


class Deployment:
    """One pipeline's slots, proxy and state (`state.json`) and audit log (`audit.jsonl`)."""

    def __init__(self, folder: Path, layout: ProxyLayout, slot_env: dict[str, str], bentoml: str) -> None:
        self.folder = Path(folder)
        self.layout = layout
        self.slot_env = slot_env
        self.bentoml = bentoml
        self.folder.mkdir(parents=True, exist_ok=True)

    # state -----------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def state(self) -> dict[str, Any]:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"active": None, "slots": {}, "previous": None}

    def _save(self, state: dict[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(state, indent=2).encode())

    def audit(self, action: str, who: str, why: str, **details: Any) -> None:
        """One step in the shared, hash-chained audit log (`ct_assets.lib.governance.audit`); the pipeline is
        the deployment folder's name (`<home>/deploy/<pipeline>`)."""
        from ct_assets.lib.governance.audit import deployment_log

        pipeline = self.folder.name
        deployment_log(self.folder).append(
            action,
            who,
            why,
            pipeline=pipeline,
            subject=f"{pipeline}/deployment",
            component="deployment",
            details=details,
        )

    def audit_log(self) -> list[dict[str, Any]]:
        """This deployment's steps (at, action, who, why and the step's details), oldest first."""
        from ct_assets.lib.governance.audit import deployment_log, flat

        entries = deployment_log(self.folder).entries(pipeline=self.folder.name, component="deployment")
        return [flat(e) for e in entries]

    # processes -------------------------------------------------------------------------------
    def ensure_proxy(self) -> None:
        if self.layout.socket.exists():
            try:
                proxy.command(self.layout, "show info")
                return
            except OSError:
                pass
        active = self.state().get("active")
        process = proxy.start(self.layout, {s: WEIGHT_SCALE if s == active else 0 for s in proxy.SLOTS})
        state = self.state()
        state["proxy_pid"] = process.pid
        self._save(state)

    def start_slot(self, slot: str, bento: str, extra_env: dict[str, str] | None = None) -> None:
        self.stop_slot(slot)
        if self.layout.socket.exists():  # a new bento is no standby until it has served as active
            proxy.set_standby(self.layout, slot, False)
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
        log = (self.folder / f"{slot}.log").open("a")
        process = subprocess.Popen(
            [self.bentoml, "serve", bento, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        state = self.state()
        state["slots"][slot] = {
            "bento": bento,
            "pid": process.pid,
            "port": port,
            "started_at": _now(),
            "instance": instance,
        }
        self._save(state)
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", process, f"slot on port {port}", timeout=120)
        self._wait_up(slot)

    def _wait_up(self, slot: str, timeout: float = 20) -> None:
        """Wait until the proxy's own health check sees the slot UP (before it gets any traffic)."""
        if not self.layout.socket.exists():
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proxy.server_stats(self.layout).get(slot, {}).get("status", "").startswith("UP"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the proxy never saw slot {slot} healthy")

    def stop_slot(self, slot: str) -> None:
        state = self.state()
        info = state["slots"].pop(slot, None)
        self._save(state)
        if info:
            _terminate_group(info["pid"], timeout=20, instance=info.get("instance"))

    def shutdown(self) -> None:
        for slot in proxy.SLOTS:
            self.stop_slot(slot)
        pid = self.state().get("proxy_pid")
        if pid:
            _terminate_group(pid, timeout=5)

    # traffic ---------------------------------------------------------------------------------
    def route(self, shares: dict[str, float]) -> None:
        proxy.set_weights(self.layout, {s: round(shares.get(s, 0.0) * WEIGHT_SCALE) for s in proxy.SLOTS})

    def _drain(self, slot: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = proxy.server_stats(self.layout).get(slot, {})
            if int(stats.get("scur") or 0) == 0:
                return
            time.sleep(0.1)

    # the rollout -----------------------------------------------------------------------------
    def rollout(
        self,
        bento: str,
        compatibility: tuple[list[dict], list[float]],
        reference_scores: list[float],
        policy: HealthPolicy,
        who: str,
        auto_switch: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> RolloutResult:
        """Start `bento` in the idle slot, check it, canary it, then switch or roll back."""
        self.ensure_proxy()
        state = self.state()
        active = state.get("active")
        idle = "green" if active == "blue" else "blue"
        self.audit("rollout_started", who, f"deploy {bento}", slot=idle, active=active)
        try:
            self.start_slot(idle, bento, extra_env)
        except RuntimeError as err:
            return self._roll_back(idle, bento, [f"the new slot did not start: {err}"], who, {})
        problem = self._compatible(idle, *compatibility)
        if problem:
            return self._roll_back(idle, bento, [problem], who, {})
        if active is None:  # first deployment: nothing to protect, all traffic at once
            self.route({idle: 1.0})
            return self._switched(idle, bento, who, {}, first=True)
        self.route({active: 1 - policy.canary_share, idle: policy.canary_share})
        self.audit("canary", who, f"{policy.canary_share:.0%} of traffic to {idle}", slot=idle, bento=bento)
        health, reasons = self._watch(idle, reference_scores, policy)
        if reasons:
            return self._roll_back(idle, bento, reasons, who, health)
        if not auto_switch:
            state = self.state()
            state["pending"] = {"slot": idle, "bento": bento}
            self._save(state)
            self.audit(
                "awaiting_approval",
                who,
                "automatic rollout is off: a person approves the switch",
                slot=idle,
                bento=bento,
                health=health,
            )
            return RolloutResult("awaiting_approval", idle, bento, [], health)
        return self._switched(idle, bento, who, health)

    def _compatible(self, slot: str, rows: list[dict], expected: list[float]) -> str | None:
        import httpx
        import numpy as np

        if not rows:
            return None
        port = self.layout.slot_ports[slot]
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"rows": rows}, timeout=120)
        except httpx.HTTPError as err:
            return f"inference compatibility: the new slot did not answer ({err})"
        if answer.status_code != 200:
            return f"inference compatibility: the new slot answered {answer.status_code}: {answer.text[:300]}"
        served = np.array([p["probability"] for p in answer.json()["predictions"]])
        difference = float(np.max(np.abs(served - np.array(expected)))) if len(served) else 0.0
        if len(served) != len(expected) or difference > 1e-9:
            return (
                f"inference compatibility: holdout scores differ from the evaluation's "
                f"(max |difference| {difference:.3g} over {len(served)} rows)"
            )
        return None

    def _watch(
        self, slot: str, reference: list[float], policy: HealthPolicy
    ) -> tuple[dict[str, Any], list[str]]:
        """Health of the canary on real traffic over the window."""
        import numpy as np

        before = proxy.server_stats(self.layout).get(slot, {})
        started = _now()
        down = self._wait_window(slot, policy.window_seconds)
        after = proxy.server_stats(self.layout).get(slot, {})

        def delta(name: str) -> int:
            return int(after.get(name) or 0) - int(before.get(name) or 0)

        requests = delta("stot")
        errors = delta("hrsp_5xx") + delta("econ") + delta("eresp")
        logged = self._log_since(slot, started)
        latencies = [r["latency_ms"] for r in logged if r.get("latency_ms") is not None]  # per request
        scores = [score for r in logged for score in r["score"]]
        health = {
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
            "score_shift": _score_hellinger(scores, reference),
        }
        reasons = []
        if down:  # the window ended early: nothing else about the canary matters
            health.update(down)
            return health, [down["reason"]]
        if requests < policy.min_requests:
            reasons.append(
                f"only {requests} requests reached the canary in {policy.window_seconds:g} s "
                f"(needs {policy.min_requests})"
            )
        if health["error_rate"] > policy.max_error_rate:
            reasons.append(f"error rate {health['error_rate']:.1%} > {policy.max_error_rate:.1%}")
        if health["p99_ms"] is not None and health["p99_ms"] > policy.max_p99_ms:
            reasons.append(f"p99 latency {health['p99_ms']:.0f} ms > {policy.max_p99_ms:.0f} ms")
        if health["score_shift"] > policy.max_score_shift:
            reasons.append(
                f"score distribution moved {health['score_shift']:.2f} (Hellinger) from the holdout's "
                f"> {policy.max_score_shift:.2f}"
            )
        return health, reasons

    def _wait_window(self, slot: str, seconds: float) -> dict[str, Any] | None:
        """Sleep through the health window, ending it early when the slot dies: HAProxy marks it
        DOWN (health check, or refused connections on live traffic) or its server process exits."""
        from ct_assets.lib.core import processes

        pid = self.state()["slots"].get(slot, {}).get("pid")
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            stats = proxy.server_stats(self.layout).get(slot, {})
            status = stats.get("status", "")
            gone = pid is not None and not processes.is_running(pid)
            if status.startswith("DOWN") or gone:
                check = f"{stats.get('check_status') or '?'} {stats.get('check_desc') or ''}".strip()
                reason = (
                    f"slot {slot} died {time.monotonic() - began:.1f} s into the canary: HAProxy sees it "
                    f"{status or 'unknown'} (last check {check})"
                    + (f", its server process {pid} is gone" if gone else "")
                )
                return {"slot_down": True, "detected_at": time.time(), "reason": reason}
            time.sleep(0.1)
        return None

    def _log_since(self, slot: str, since: str) -> list[dict[str, Any]]:
        """The slot's logged requests since `since` (each with its predictions' scores)."""
        from ct_assets.lib.serving.prediction_log import log_files, read_requests

        folder = Path(self.slot_env.get("CT_PREDICTION_LOG", self.folder / "log"))
        return [request for path in log_files(folder, slot) for request in read_requests(path, since=since)]

    def _switched(
        self, slot: str, bento: str, who: str, health: dict[str, Any], first: bool = False
    ) -> RolloutResult:
        state = self.state()
        old = state.get("active")
        self.route({slot: 1.0})
        proxy.set_standby(self.layout, slot, True)
        state = self.state()
        state["previous"] = {"slot": old, "bento": state["slots"].get(old, {}).get("bento")} if old else None
        state["active"] = slot
        state.pop("pending", None)
        self._save(state)
        self.audit(
            "switch",
            who,
            "first deployment" if first else "canary healthy",
            slot=slot,
            bento=bento,
            health=health,
        )
        return RolloutResult("switched", slot, bento, [], health)

    def _roll_back(
        self, slot: str, bento: str, reasons: list[str], who: str, health: dict[str, Any]
    ) -> RolloutResult:
        active = self.state().get("active")
        if active:
            self.route({active: 1.0})
        self._drain(slot)
        self.stop_slot(slot)
        self.audit("rollback", who, "; ".join(reasons), slot=slot, bento=bento, health=health, automatic=True)
        return RolloutResult("rolled_back", slot, bento, reasons, health)

    def approve(self, who: str, why: str) -> RolloutResult:
        pending = self.state().get("pending")
        if not pending:
            raise RuntimeError("no rollout is waiting for approval")
        self.audit("approved", who, why, **pending)
        return self._switched(pending["slot"], pending["bento"], who, {})

    def fail_over(self, dead: str, why: str, who: str = "watchdog") -> RolloutResult:
        """The active slot is down: the standby slot (the previous bento, still running at weight 0
        since the switch) takes all traffic, the dead slot is stopped, and the audit log says why.
        HAProxy's backup entries already sent traffic there; this makes it the deployment's state."""
        state = self.state()
        standby = "green" if dead == "blue" else "blue"
        kept = state["slots"].get(standby)
        if state.get("active") != dead or not kept:
            raise RuntimeError(f"cannot fail over from {dead}: active is {state.get('active')}, no standby")
        self.route({standby: 1.0})
        proxy.set_standby(self.layout, standby, True)
        state = self.state()
        failed_bento = state["slots"].get(dead, {}).get("bento")
        state["active"] = standby
        state["previous"] = {"slot": dead, "bento": failed_bento}
        state.pop("pending", None)
        self._save(state)
        self.audit(
            "failover",
            who,
            why,
            slot=standby,
            bento=kept["bento"],
            failed_slot=dead,
            failed_bento=failed_bento,
            automatic=True,
        )
        self.stop_slot(dead)
        return RolloutResult("failed_over", standby, kept["bento"], [why], {})

    def rollback_to_previous(self, who: str, why: str) -> RolloutResult:
        """Operator rollback: the previous bento takes all traffic again (restarted if needed)."""
        state = self.state()
        previous = state.get("previous")
        if not previous or not previous.get("bento"):
            raise RuntimeError("no previous deployment to roll back to")
        active = state["active"]
        slot = previous["slot"]
        if state["slots"].get(slot, {}).get("bento") != previous["bento"]:
            self.start_slot(slot, previous["bento"])
        self.route({slot: 1.0})
        proxy.set_standby(self.layout, slot, True)
        self._drain(active)
        state = self.state()
        state["previous"] = {"slot": active, "bento": state["slots"].get(active, {}).get("bento")}
        state["active"] = slot
        self._save(state)
        self.audit("rollback", who, why, slot=slot, bento=previous["bento"], automatic=False)
        return RolloutResult("rolled_back", slot, previous["bento"], [why], {})
