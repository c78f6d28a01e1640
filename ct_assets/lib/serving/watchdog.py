"""The serving watchdog: when the active slot goes DOWN, the standby slot takes over, officially.

HAProxy already routes around a dead active slot on its own (each slot has a `backup` entry, see
`ct_assets.lib.serving.proxy`), so no request waits for this loop. What the watchdog adds is what an operator
needs afterwards: the deployment's state names the standby as active (so the next rollout, a
rollback or a restart of the proxy does not send traffic back to the dead slot), the dead slot is
stopped, the audit log has a `failover` entry, and a critical alert says what happened and what to do.

It acts on HAProxy's verdict (`DOWN`: 2 failed health checks, or a refused connection on live
traffic), never on a slot that is merely slow or in maintenance, and on an active slot whose
server process is gone while its workers live on: BentoML's workers outlive a killed server and
keep answering, UP to HAProxy, but nothing supervises them; failing over stops them. The standby
must be the slot that served before the last switch, still running the same bento
(`state["previous"]`), never a candidate in its canary. With no such healthy standby it cannot
fail over: it raises one critical alert (not one per tick) and leaves routing to HAProxy. It acts
under the deployment's lock (`deploy_lock`), so never in the middle of a rollout, rollback or
stop; it looks again once that has ended.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ct_assets.lib.core import processes
from ct_assets.lib.core.alerts import Alert
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.deployment_state import DeployState, other_slot
from ct_assets.lib.serving.rollout import Deployment, DeploymentBusy, RolloutResult
from ct_assets.lib.serving.slots import unsupervised_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    """Why the active slot has failed, and whether HAProxy has marked it DOWN (else its server is
    gone while its workers may still answer)."""

    cause: str
    down: bool


class Watchdog:
    """Checks the active slot every `interval` seconds (in a thread, or one `check()` at a time);
    `send` delivers its alerts (the deployment's alert sink, e.g. `Config.alerts_file`)."""

    def __init__(
        self,
        deployment: Deployment,
        send: Callable[[Alert], None],
        pipeline: str | None = None,
        owner: str = "serving on-call",
        interval: float = 0.25,
    ) -> None:
        self.deployment = deployment
        self.pipeline = pipeline or deployment.folder.name
        self.owner = owner
        self.interval = interval
        self.send = send
        self.events: list[RolloutResult] = []
        self.errors: list[str] = []
        self._alerted_no_standby: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> RolloutResult | None:
        """One look: fail over if the active slot has failed (`_fault`) and the standby is UP. It
        acts under the deployment's lock, on the state and proxy as they are then; while another
        change holds the lock (a rollout, a rollback, a stop) it does nothing and looks again next
        tick."""
        if self._fault(self.deployment.state()) is None:
            self._alerted_no_standby = None
            return None
        try:
            with self.deployment.lock("failover", "watchdog"):
                return self._act()
        except DeploymentBusy:
            return None

    def _fault(self, state: DeployState, stats: dict[str, dict[str, str]] | None = None) -> Fault | None:
        """How the active slot has failed, or None (also when nothing is deployed, or a stop is
        tearing the deployment down: its slots go down as planned). A failure is HAProxy's DOWN, or
        a server process that is gone while its workers still serve, unsupervised."""
        active = state.active
        if not active or state.stopping_or_stopped:
            return None
        if stats is None:
            stats = proxy.server_stats(self.deployment.layout)
        seen = stats.get(active, {})
        info = state.slots.get(active)
        bento = state.bento_in(active)
        if seen.get("status", "").startswith("DOWN"):
            process = (
                ""
                if info is None
                else f"; its server process {info.pid} is "
                f"{'running' if processes.is_running(info.pid) else 'gone'}"
            )
            check = f"{seen.get('check_status') or '?'} {seen.get('check_desc') or ''}".strip()
            return Fault(f"active slot {active} ({bento}) is DOWN (last health check {check}){process}", True)
        workers = unsupervised_workers(info)
        if info is not None and workers:
            return Fault(
                f"the server process {info.pid} of active slot {active} ({bento}) is gone; "
                f"{len(workers)} of its worker processes still serve, unsupervised",
                False,
            )
        return None  # a slot dead with all its processes is HAProxy's DOWN within a second

    def _act(self) -> RolloutResult | None:
        state = self.deployment.state()
        stats = proxy.server_stats(self.deployment.layout)
        fault = self._fault(state, stats)
        if fault is None or state.active is None:
            return None
        active, cause, bento = state.active, fault.cause, state.bento_in(state.active)
        standby = other_slot(active)
        previous = state.previous
        # the bento that served before the switch, not a candidate under canary
        proven = (
            previous is not None and previous.slot == standby and previous.bento == state.bento_in(standby)
        )
        if not proven or not stats.get(standby, {}).get("status", "").startswith("UP"):
            if self._alerted_no_standby != active:
                self._alerted_no_standby = active
                self.deployment.audit("failover_impossible", "watchdog", cause + "; no healthy standby")
                self.send(
                    Alert(
                        "critical",
                        self.pipeline,
                        None,
                        cause
                        + "; there is no healthy standby slot, so "
                        + (
                            "the stable port answers 503"
                            if fault.down
                            else "they serve until the slot is restarted"
                        ),
                        "restart the slot or roll out a bento now "
                        "(`ct deploy rollback` restarts the previous one)",
                        self.owner,
                    )
                )
            return None
        result = self.deployment.fail_over(active, cause)
        self.send(
            Alert(
                "critical",
                self.pipeline,
                None,
                cause,
                f"slot {standby} ({result.bento}) now serves all traffic; the failed bento "
                f"{bento} is stopped: read {active}.log in the deployment folder, then "
                "redeploy",
                self.owner,
            )
        )
        self.events.append(result)
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as err:  # a watchdog must outlive a bad tick (proxy restarting...)
                text = f"{type(err).__name__}: {err}"
                if not self.errors or self.errors[-1] != text:  # once per distinct problem
                    log.warning("watchdog check failed: %s", text)
                self.errors.append(text)
                del self.errors[:-100]

    def start(self) -> Watchdog:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="serving-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
