"""Blue-green deployment with a canary, on one machine: two `bentoml serve` slots behind HAProxy.

A rollout starts the new bento in the idle slot; before any traffic it must reproduce the
evaluation's scores on the holdout (inference compatibility); then it takes a canary share of real
traffic for a health window; then all traffic switches to it, or it is rolled back automatically
with the reason. Every step is written to the audit log.

`Deployment` composes the roles: `DeploymentRecord` (state and audit), `SlotControl` (processes),
`Traffic` (proxy weights) and `CanaryJudge` (health judgement). Every change (rollout, approval,
rollback, failover, stop) holds the deployment's lock (`deploy_lock`): a second one, from any
process, is refused at once with `DeploymentBusy`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ct_assets.lib.serving.bento_build import require_bento
from ct_assets.lib.serving.canary_health import CanaryJudge, HealthPolicy, compatibility_problem
from ct_assets.lib.serving.canary_records import CanaryHealth
from ct_assets.lib.serving.deploy_lock import DeploymentBusy, deployment_lock
from ct_assets.lib.serving.deployment_state import (
    DeploymentRecord,
    DeployState,
    SlotBento,
    other_slot,
)
from ct_assets.lib.serving.proxy import ProxyLayout, server_stats
from ct_assets.lib.serving.slots import SlotControl
from ct_assets.lib.serving.traffic import Traffic

__all__ = ["ROLLOUT_ACTIONS", "Deployment", "DeploymentBusy", "HealthPolicy", "RolloutResult"]

# The audit actions of a rollout's steps, as `Deployment` writes them.
ROLLOUT_ACTIONS = frozenset(
    {"rollout_started", "canary", "switch", "rollback", "awaiting_approval", "approved", "failover"}
)


@dataclass
class RolloutResult:
    status: str  # "switched" | "rolled_back" | "awaiting_approval" | "failed_over" | "already_serving"
    slot: str
    bento: str
    reasons: list[str] = field(default_factory=list)
    health: CanaryHealth | None = None  # the canary's window, when one ran

    def health_figures(self) -> dict[str, Any]:
        """The canary's figures as JSON-ready data (empty when no window ran)."""
        return self.health.stored() if self.health else {}


class Deployment:
    """One pipeline's slots, proxy, state (`state.json`) and audit log, and the rollout sequence."""

    def __init__(
        self,
        folder: Path,
        layout: ProxyLayout,
        slot_env: dict[str, str],
        bentoml: str,
        audit_home: Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.layout = layout
        self.slot_env = slot_env
        self.bentoml = bentoml
        self.record = DeploymentRecord(self.folder, audit_home)
        self.slots = SlotControl(self.record, layout, slot_env, bentoml)
        self.traffic = Traffic(layout)
        self.judge = CanaryJudge(layout, Path(slot_env.get("CT_PREDICTION_LOG", self.folder / "log")))

    # the record ------------------------------------------------------------------------------
    def lock(self, action: str, who: str) -> AbstractContextManager[None]:
        """Hold the deployment's lock for `action` by `who` (`DeploymentBusy` when another holds it)."""
        return deployment_lock(self.folder, action, who)

    @property
    def state_path(self) -> Path:
        return self.record.state_path

    def state(self) -> DeployState:
        return self.record.read()

    def audit(self, action: str, who: str, why: str, **details: Any) -> None:
        self.record.audit(action, who, why, **details)

    def audit_log(self) -> list[dict[str, Any]]:
        return self.record.audit_log()

    def health(self) -> dict[str, Any]:
        """Proxy and slot health (see `SlotControl.health`)."""
        return self.slots.health()

    # processes and traffic -------------------------------------------------------------------
    def ensure_proxy(self) -> None:
        self.slots.ensure_proxy()

    def start_slot(self, slot: str, bento: str, extra_env: dict[str, str] | None = None) -> None:
        self.slots.start(slot, bento, extra_env)

    def stop_slot(self, slot: str) -> None:
        self.slots.stop(slot)

    def shutdown(self, who: str = "ct", why: str = "deployment stopped") -> dict[str, str]:
        """Stop both slots and the proxy (`SlotControl.shutdown`), with a `deploy_stop` audit entry
        (who, why, what ran) unless nothing was deployed; what was running."""
        with self.lock("stop", who):
            before = self.state()
            stopped = self.slots.shutdown(who)
            if before.holds_a_deployment or stopped:
                self.audit(
                    "deploy_stop",
                    who,
                    why,
                    stopped=list(stopped.values()),
                    active=before.active,
                    bentos={slot: process.bento for slot, process in before.slots.items()},
                )
            return stopped

    def refuse_if_stopped(self, wanted: str) -> None:
        """Raise (RuntimeError) when `ct deploy stop` stopped the deployment and nothing started since:
        `wanted` (an approval, a rollback) has nothing to act on."""
        stopped_at = self.state().stopped_at
        if stopped_at is not None:
            raise RuntimeError(
                f"the {self.folder.name} deployment is stopped (since {stopped_at}): no {wanted} "
                "(`ct deploy start` deploys the champion)"
            )

    def route(self, shares: dict[str, float]) -> None:
        self.traffic.route(shares)

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
        """Start `bento` in the idle slot, check it, canary it, then switch or roll back. A tag
        that names no bento in the store raises `UnknownBento` before anything starts or is audited,
        and a deployment another change holds raises `DeploymentBusy`."""
        require_bento(bento)
        with self.lock(f"rollout of {bento}", who):
            return self._rollout(bento, compatibility, reference_scores, policy, who, auto_switch, extra_env)

    def _rollout(
        self,
        bento: str,
        compatibility: tuple[list[dict], list[float]],
        reference_scores: list[float],
        policy: HealthPolicy,
        who: str,
        auto_switch: bool,
        extra_env: dict[str, str] | None,
    ) -> RolloutResult:
        self.slots.ensure_proxy()
        active = self.state().active
        if active is not None and not self.slots.running(active):
            active = None  # stopped (`ct deploy stop`): no traffic to canary against, a first deployment
        idle = other_slot(active)
        self.audit("rollout_started", who, f"deploy {bento}", slot=idle, active=active)
        try:
            instance = self.slots.start(idle, bento, extra_env)
        except RuntimeError as err:
            return self._roll_back(idle, bento, [f"the new slot did not start: {err}"], who, None)
        problem = compatibility_problem(self.layout.slot_ports[idle], *compatibility, instance=instance)
        if problem:
            return self._roll_back(idle, bento, [problem], who, None)
        if active is None:  # first deployment: nothing to protect, all traffic at once
            self.traffic.route({idle: 1.0})
            return self._switched(idle, bento, who, None, first=True)
        self.traffic.canary(active, idle, policy.canary_share)
        self.audit("canary", who, f"{policy.canary_share:.0%} of traffic to {idle}", slot=idle, bento=bento)
        health, reasons = self.judge.watch(idle, self.slots.pid(idle), reference_scores, policy, active)
        if reasons:
            return self._roll_back(idle, bento, reasons, who, health)
        if not auto_switch:
            return self._await_approval(idle, bento, who, health)
        return self._switched(idle, bento, who, health)

    def _await_approval(self, slot: str, bento: str, who: str, health: CanaryHealth | None) -> RolloutResult:
        state = self.state()
        state.pending = SlotBento(slot=slot, bento=bento)
        self.record.save(state)
        self.audit(
            "awaiting_approval",
            who,
            "automatic rollout is off: a person approves the switch",
            slot=slot,
            bento=bento,
            **_health_entry(health),
        )
        return RolloutResult("awaiting_approval", slot, bento, [], health)

    def _switched(
        self, slot: str, bento: str, who: str, health: CanaryHealth | None, first: bool = False
    ) -> RolloutResult:
        old = self.state().active
        self.traffic.all_to(slot)
        state = self.state()
        kept = state.bento_in(old)
        state.previous = SlotBento(slot=old, bento=kept) if kept else None
        state.active = slot
        state.pending = None
        self.record.save(state)
        self.audit(
            "switch",
            who,
            "first deployment" if first else "canary healthy",
            slot=slot,
            bento=bento,
            **_health_entry(health),
        )
        return RolloutResult("switched", slot, bento, [], health)

    def _roll_back(
        self, slot: str, bento: str, reasons: list[str], who: str, health: CanaryHealth | None
    ) -> RolloutResult:
        active = self.state().active
        if active:
            self.traffic.route({active: 1.0})
        cut = self.traffic.drain(slot)  # requests the stop below cuts off, when the drain timed out
        self.slots.stop(slot)
        self.audit(
            "rollback",
            who,
            "; ".join(reasons),
            slot=slot,
            bento=bento,
            **_health_entry(health),
            automatic=True,
            **({"requests_cut": cut} if cut else {}),
        )
        return RolloutResult("rolled_back", slot, bento, reasons, health)

    def approve(self, who: str, why: str) -> RolloutResult:
        with self.lock("approval", who):
            return self._approve(who, why)

    def _approve(self, who: str, why: str) -> RolloutResult:
        self.refuse_if_stopped("rollout waits for approval")
        pending = self.state().pending
        if pending is None or pending.slot is None or pending.bento is None:
            raise RuntimeError("no rollout is waiting for approval")
        if self.slots.pid(pending.slot) is not None and not self.slots.running(pending.slot):
            raise RuntimeError(
                f"the server of slot {pending.slot} ({pending.bento}) is gone: nothing to approve "
                "(roll the bento out again)"
            )
        self.traffic.all_to(pending.slot)  # first: a proxy that does not answer leaves no approval on record
        self.audit("approved", who, why, slot=pending.slot, bento=pending.bento)
        return self._switched(pending.slot, pending.bento, who, None)

    def fail_over(self, dead: str, why: str, who: str = "watchdog") -> RolloutResult:
        """The active slot is down: the standby slot (the previous bento, still running at weight 0
        since the switch) takes all traffic, the dead slot is stopped, and the audit log says why.
        HAProxy's backup entries already sent traffic there; this makes it the deployment's state."""
        with self.lock("failover", who):
            return self._fail_over(dead, why, who)

    def _fail_over(self, dead: str, why: str, who: str) -> RolloutResult:
        state = self.state()
        standby = other_slot(dead)
        kept = state.slots.get(standby)
        if state.active != dead or kept is None:
            raise RuntimeError(f"cannot fail over from {dead}: active is {state.active}, no standby")
        self.traffic.all_to(standby)
        state = self.state()
        failed_bento = state.bento_in(dead)
        state.active = standby
        state.previous = SlotBento(slot=dead, bento=failed_bento)
        state.pending = None
        self.record.save(state)
        self.audit(
            "failover",
            who,
            why,
            slot=standby,
            bento=kept.bento,
            failed_slot=dead,
            failed_bento=failed_bento,
            automatic=True,
        )
        self.slots.stop(dead)
        return RolloutResult("failed_over", standby, kept.bento, [why])

    def rollback_to_previous(self, who: str, why: str) -> RolloutResult:
        """Operator rollback: the previous bento takes all traffic again, restarted when its slot
        runs another bento, none, or only workers whose server is gone (never traffic onto those)."""
        with self.lock("rollback", who):
            return self._rollback_to_previous(who, why)

    def _rollback_to_previous(self, who: str, why: str) -> RolloutResult:
        self.refuse_if_stopped("deployment to roll back")
        state = self.state()
        previous = state.previous
        if previous is None or previous.slot is None or previous.bento is None:
            raise RuntimeError("no previous deployment to roll back to")
        active, slot, bento = state.active, previous.slot, previous.bento
        server_stats(self.layout)  # ProxyDown, in one line, before any slot is restarted
        reasons = [why]
        if self.slots.serves(slot) == bento and not self.slots.running(slot):
            reasons.append(f"slot {slot} restarted: its server process {self.slots.pid(slot)} was gone")
        if self.slots.serves(slot) != bento or not self.slots.running(slot):
            self.slots.start(slot, bento)
        self.traffic.all_to(slot)
        if active:
            self.traffic.drain(active)
        state = self.state()
        state.previous = SlotBento(slot=active, bento=state.bento_in(active))
        state.active = slot
        self.record.save(state)
        restarted = {"restarted": reasons[1]} if len(reasons) > 1 else {}
        self.audit("rollback", who, why, slot=slot, bento=bento, automatic=False, **restarted)
        return RolloutResult("rolled_back", slot, bento, reasons)


def _health_entry(health: CanaryHealth | None) -> dict[str, Any]:
    """The audit entry's `health` field: the canary's figures, when a window ran."""
    return {"health": health.stored()} if health else {}
