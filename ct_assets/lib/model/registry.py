"""The model registry: every model version with its lineage, metrics and gate verdict; the
champion alias with its promotion history; every move is written to the audit log.

Plain files under one folder per pipeline, written atomically under a lock:
`models/<sha256>.cbm`, `datasets/<version>.parquet`, `versions/<id>.json`, `champion.json`,
`history.jsonl`. Every move of the alias is also in the shared, hash-chained audit log
(`ct_assets.lib.core.audit`).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core.audit import AuditLog, flat, log_for
from ct_assets.lib.core.stored_json import DamagedRecord, read_record
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.model.records import ChampionMove, ModelVersion, TrainedModel


class RegistryError(ValueError):
    """A registry operation that is not allowed; says why."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write_json(path: Path, payload: Any) -> None:
    write_atomically(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def _append_jsonl(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """Typed field values (records, dataclasses) as the JSON the record is validated from."""
    return {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v for k, v in fields.items()}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Registry:
    """One pipeline's registry."""

    def __init__(self, root: Path, pipeline: str, audit_home: Path | None = None) -> None:
        self.folder = Path(root) / pipeline
        self.pipeline = pipeline
        self.audit_home = audit_home

    @property
    def models(self) -> Path:
        return self.folder / "models"

    def dataset_path(self, version: str) -> Path:
        return self.folder / "datasets" / f"{version}.parquet"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _version_path(self, version: str) -> Path:
        return self.folder / "versions" / f"{version}.json"

    def register(self, trained: TrainedModel) -> str:
        """Store a new model version; returns its id (v0001, v0002, ...)."""
        with self._locked():
            number = len(list((self.folder / "versions").glob("v*.json"))) + 1
            version = f"v{number:04d}"
            record = ModelVersion(**dict(trained), version=version, registered_at=_now())
            _write_json(self._version_path(version), record.to_json())
        return version

    def _read(self, path: Path) -> ModelVersion:
        try:
            return read_record(ModelVersion, path, "model version record")
        except DamagedRecord as err:
            raise RegistryError(str(err)) from None

    def get(self, version: str) -> ModelVersion:
        path = self._version_path(version)
        if not path.exists():
            raise RegistryError(f"{self.pipeline} has no model version {version}")
        return self._read(path)

    def update(self, version: str, **fields: Any) -> ModelVersion:
        """Add fields (evaluation, verdict) to a version's record; they are validated as its types."""
        with self._locked():
            record = ModelVersion.model_validate({**self.get(version).to_json(), **_plain(fields)})
            _write_json(self._version_path(version), record.to_json())
        return record

    def versions(self) -> list[ModelVersion]:
        return [self._read(p) for p in sorted((self.folder / "versions").glob("v*.json"))]

    def champion_version(self) -> str | None:
        path = self.folder / "champion.json"
        return json.loads(path.read_text())["version"] if path.exists() else None

    def champion(self) -> ModelVersion | None:
        version = self.champion_version()
        return self.get(version) if version else None

    def history(self) -> list[ChampionMove]:
        """Every move of the champion alias, oldest first."""
        return [ChampionMove.model_validate(e) for e in _read_jsonl(self.folder / "history.jsonl")]

    def audit(self) -> AuditLog:
        """The audit log this registry writes to: the home's (`audit_home`) when the registry is
        inside it, else the registry root's own."""
        return log_for(self.folder.parent, self.audit_home)

    def audit_log(self) -> list[dict[str, Any]]:
        """This pipeline's champion moves from the shared audit log (at, action, who, why, details)."""
        return [flat(e) for e in self.audit().entries(pipeline=self.pipeline, component="registry")]

    def _move_alias(self, action: str, version: str, who: str, why: str) -> ChampionMove:
        previous = self.champion_version()
        move = ChampionMove(at=_now(), action=action, version=version, previous=previous, who=who, why=why)
        _write_json(self.folder / "champion.json", {"version": version, "since": move.at})
        _append_jsonl(self.folder / "history.jsonl", move.model_dump())
        self.audit().append(
            action,
            who,
            why,
            pipeline=self.pipeline,
            subject=f"{self.pipeline}/champion",
            component="registry",
            details={"version": version, "previous": previous},
        )
        return move

    def promote(self, version: str, who: str, why: str) -> ChampionMove:
        """Make `version` the champion; only a version whose gate verdict passed may be promoted."""
        if not who.strip() or not why.strip():
            raise RegistryError("a promotion needs who and why")
        with self._locked():
            verdict = self.get(version).verdict
            if verdict is None or not verdict.passed:
                reasons = "; ".join(verdict.reasons) if verdict else "it was never evaluated"
                raise RegistryError(f"{self.pipeline} {version} did not pass the gate: {reasons}")
            if self.champion_version() == version:
                raise RegistryError(f"{self.pipeline} {version} is already the champion")
            return self._move_alias("promote", version, who, why)

    def rollback(self, who: str, why: str) -> ChampionMove:
        """Move the champion back to the one it replaced; recorded in history and audit log."""
        if not who.strip() or not why.strip():
            raise RegistryError("a rollback needs who and why")
        with self._locked():
            current = self.champion_version()
            if current is None:
                raise RegistryError(f"{self.pipeline} has no champion to roll back")
            previous = self.previous_champion(current)
            if previous is None:
                raise RegistryError(
                    f"{self.pipeline} {current} is the first champion: nothing to roll back to"
                )
            return self._move_alias("rollback", previous, who, why)

    def previous_champion(self, current: str) -> str | None:
        """The champion before `current` came in (skipping versions later rolled back past)."""
        history = self.history()
        for move in reversed(history):
            if move.version == current and move.action == "promote":
                return move.previous
        for move in reversed(history):
            if move.version == current:
                return move.previous
        return None
