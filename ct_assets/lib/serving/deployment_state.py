"""A deployment's record on disk: its state (`state.json`: which slot is active, what each slot
serves, the previous deployment, a pending approval), typed as `DeployState`, and its steps in the
shared audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ct_assets.lib.core.audit import AuditLog, deployment_log, flat
from ct_assets.lib.core.stored_json import read_record
from ct_assets.lib.data.landing import write_atomically


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlotProcess(_State):
    """A slot's running `bentoml serve`: the bento, its process group and port."""

    bento: str
    pid: int
    port: int
    started_at: str
    instance: str | None = None  # the value of the instance variable its processes carry


class SlotBento(_State):
    """A bento in a slot: the one that served before the last switch, or one awaiting approval."""

    slot: str | None
    bento: str | None


class DeployState(_State):
    """Which slot takes the traffic, what each slot runs, what served before, what awaits approval,
    when `ct deploy stop` began tearing the deployment down (`stopping_since`, until it is done),
    and when and by whom it was stopped (None once a slot starts again)."""

    active: str | None = None
    slots: dict[str, SlotProcess] = {}
    previous: SlotBento | None = None
    pending: SlotBento | None = None
    proxy_supervisor_pid: int | None = None
    stopping_since: str | None = None
    stopped_at: str | None = None
    stopped_by: str | None = None

    @property
    def stopping_or_stopped(self) -> bool:
        """Is a stop tearing the deployment down, or has one stopped it? (Nothing to watch then.)"""
        return bool(self.stopping_since or self.stopped_at)

    @property
    def holds_a_deployment(self) -> bool:
        """Does the record name anything deployed (a slot, the active one, a pending canary, the
        proxy's supervisor)?"""
        return bool(self.slots or self.active or self.pending or self.proxy_supervisor_pid)

    @property
    def active_bento(self) -> str | None:
        """The bento tag the active slot serves (None when nothing is deployed)."""
        process = self.slots.get(self.active) if self.active else None
        return process.bento if process else None

    def bento_in(self, slot: str | None) -> str | None:
        process = self.slots.get(slot) if slot else None
        return process.bento if process else None


def other_slot(slot: str | None) -> str:
    """The slot that is not `slot` (blue when none is)."""
    return "green" if slot == "blue" else "blue"


class DeploymentRecord:
    """The state file and audit trail of one pipeline's deployment folder (`<home>/deploy/<pipeline>`)."""

    def __init__(self, folder: Path, audit_home: Path | None = None) -> None:
        self.folder = Path(folder)
        self.audit_home = audit_home
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def read(self) -> DeployState:
        if not self.state_path.exists():
            return DeployState()
        return read_record(DeployState, self.state_path, "deployment state")

    def save(self, state: DeployState) -> None:
        write_atomically(self.state_path, state.model_dump_json(indent=2).encode(), mode=0o600)

    def audit_trail(self) -> AuditLog:
        """The audit log this deployment writes to (the home's, when the folder is inside `audit_home`)."""
        return deployment_log(self.folder, self.audit_home)

    def audit(self, action: str, who: str, why: str, **details: Any) -> None:
        """One step in the shared, hash-chained audit log (`ct_assets.lib.core.audit`); the
        pipeline is the deployment folder's name."""
        pipeline = self.folder.name
        self.audit_trail().append(
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
        entries = self.audit_trail().entries(pipeline=self.folder.name, component="deployment")
        return [flat(e) for e in entries]
