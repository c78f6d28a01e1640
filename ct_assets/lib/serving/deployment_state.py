"""A deployment's record on disk: its state (`state.json`: which slot is active, what each slot
serves, the previous deployment, a pending approval) and its steps in the shared audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.data.landing import write_atomically

if TYPE_CHECKING:
    from ct_assets.lib.governance.audit import AuditLog


def active_bento(state: dict[str, Any]) -> str | None:
    """The bento tag the deployment's active slot serves (None when nothing is deployed)."""
    active = state.get("active")
    return (state.get("slots") or {}).get(active, {}).get("bento") if active else None


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

    def read(self) -> dict[str, Any]:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"active": None, "slots": {}, "previous": None}

    def save(self, state: dict[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(state, indent=2).encode())

    def audit_trail(self) -> AuditLog:
        """The audit log this deployment writes to (the home's, when the folder is inside `audit_home`)."""
        from ct_assets.lib.governance.audit import deployment_log

        return deployment_log(self.folder, self.audit_home)

    def audit(self, action: str, who: str, why: str, **details: Any) -> None:
        """One step in the shared, hash-chained audit log (`ct_assets.lib.governance.audit`); the
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
        from ct_assets.lib.governance.audit import flat

        entries = self.audit_trail().entries(pipeline=self.folder.name, component="deployment")
        return [flat(e) for e in entries]
