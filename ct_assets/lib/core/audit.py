"""The audit log: one append-only, hash-chained JSON-lines file for every governance action.

Every promotion, champion rollback, rollout step, deployment rollback, approval, retention deletion
and manual operator action is one line: `seq`, `at`, `who`, `action`, `pipeline`, `subject` (the
asset it concerns, like `flights_delay/champion`), `component`, `why`, `details`, `prev_hash` and
`hash` (sha256 of the line's canonical JSON without `hash`, which includes `prev_hash`). Editing,
reordering or deleting a line breaks the chain, and `verify` names the first broken line; the head
file (`audit.head.json`, the last `seq` and `hash`) also catches lines cut off the end.

Appends take an exclusive file lock, so concurrent processes never interleave or fork the chain.
Everything passes through `redaction.redact` first: secrets never reach the log.

Where: `audit.jsonl` in the home folder (`Config.audit_home`). A registry or deployment folder outside
the home (a test's temporary folder, a custom `CT_REGISTRY`), or one given no home, keeps its own
`audit.jsonl` in its root folder instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.lib.core.redaction import redact

FILE_NAME = "audit.jsonl"
GENESIS = "0" * 64


def _now() -> str:
    return datetime.now(UTC).isoformat()


def canonical(body: dict[str, Any]) -> str:
    """The exact text an entry's hash is taken over (and the line it is stored as, minus `hash`)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in body.items() if k != "hash"}).encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain: `ok`, how many entries, and readable problems."""

    path: str
    entries: int
    head: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """One hash-chained audit file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def head_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".head.json")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.with_name(f".{self.path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _last_line(self) -> str | None:
        if not self.path.exists():
            return None
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = 8192
            while True:
                start = max(0, size - block)
                handle.seek(start)
                tail = handle.read(size - start).rstrip(b"\n")
                if b"\n" in tail or start == 0:
                    last = tail.rsplit(b"\n", 1)[-1]
                    return last.decode() if last.strip() else None
                block *= 4

    def append(
        self,
        action: str,
        who: str,
        why: str,
        *,
        pipeline: str | None = None,
        subject: str | None = None,
        component: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add one entry at the end of the chain (under the lock); returns it with its hash."""
        if not str(who).strip():
            raise ValueError("an audit entry needs who")
        with self._locked():
            return self._append_locked(action, who, why, pipeline, subject, component, details)

    def _append_locked(
        self,
        action: str,
        who: str,
        why: str,
        pipeline: str | None,
        subject: str | None,
        component: str | None,
        details: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Append while the caller holds the lock."""
        last = self._last_line()
        previous = json.loads(last) if last else None
        who, why, details = redact([str(who), str(why), details or {}])  # one scan of the environment
        body = {
            "seq": (previous["seq"] + 1) if previous else 1,
            "at": _now(),
            "who": who,
            "action": action,
            "pipeline": pipeline,
            "subject": subject,
            "component": component,
            "why": why,
            "details": json.loads(canonical(details)),
            "prev_hash": previous["hash"] if previous else GENESIS,
        }
        body["hash"] = entry_hash(body)
        line = (canonical(body) + "\n").encode()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        temporary = self.head_path.with_name(f".{self.head_path.name}.tmp")
        head = json.dumps({"seq": body["seq"], "hash": body["hash"], "at": body["at"]}).encode()
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(descriptor, 0o600)  # an existing file keeps its own mode through os.open
            os.write(descriptor, head)
        finally:
            os.close(descriptor)
        temporary.replace(self.head_path)
        return body

    def entries(
        self, *, pipeline: str | None = None, component: str | None = None, after_seq: int = 0
    ) -> list[dict[str, Any]]:
        """Entries in order, optionally only one pipeline's / component's, or those after a seq."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("seq", 0) <= after_seq:
                continue
            if pipeline is not None and entry.get("pipeline") != pipeline:
                continue
            if component is not None and entry.get("component") != component:
                continue
            found.append(entry)
        return found

    def verify(self) -> ChainReport:
        """Recompute every hash and link; a problem names the line and what is wrong with it."""
        problems: list[str] = []
        previous_hash, previous_seq, count = GENESIS, 0, 0
        lines = self.path.read_text().split("\n") if self.path.exists() else []
        if lines and lines[-1] == "":
            lines.pop()
        for number, line in enumerate(lines, start=1):
            where = f"{self.path.name} line {number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{where}: not valid JSON (edited or cut off)")
                break
            count += 1
            if entry.get("seq") != previous_seq + 1:
                problems.append(
                    f"{where}: seq {entry.get('seq')} follows seq {previous_seq} "
                    "(entries removed or reordered)"
                )
            if entry.get("prev_hash") != previous_hash:
                problems.append(f"{where} (seq {entry.get('seq')}): prev_hash does not match the line before")
            recomputed = entry_hash(entry)
            if entry.get("hash") != recomputed:
                problems.append(
                    f"{where} (seq {entry.get('seq')}, {entry.get('action')}): content does not match its "
                    f"hash (recorded {str(entry.get('hash'))[:12]}, recomputed {recomputed[:12]}): edited"
                )
            previous_hash, previous_seq = str(entry.get("hash")), int(entry.get("seq") or 0)
        if self.head_path.exists():
            head = json.loads(self.head_path.read_text())
            if head.get("seq") != (previous_seq if count else None) or head.get("hash") != (
                previous_hash if count else None
            ):
                problems.append(
                    f"{self.head_path.name} records seq {head.get('seq')} ({str(head.get('hash'))[:12]}) but "
                    f"the log ends at seq {previous_seq if count else 'nothing'}: entries were removed "
                    "from the end or the log was replaced"
                )
        return ChainReport(str(self.path), count, previous_hash if count else None, problems)


def home_log(home: Path) -> AuditLog:
    """The audit log of a home folder (`Config.audit_home`)."""
    return AuditLog(Path(home) / FILE_NAME)


def log_for(base: Path, home: Path | None) -> AuditLog:
    """The audit log a registry root or deployment root writes to: the home's when the folder is
    inside `home`, else one in the folder itself."""
    resolved = Path(base).resolve()
    if home is not None:
        home = Path(home).resolve()
        if resolved == home or home in resolved.parents:
            return home_log(home)
    return AuditLog(resolved / FILE_NAME)


def deployment_log(folder: Path, home: Path | None) -> AuditLog:
    """The audit log of a deployment folder (`<home>/deploy/<pipeline>`)."""
    return log_for(Path(folder).parent, home)


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    """The short view of an entry: at, action, who, why and the details at the top level."""
    return {
        "at": entry["at"],
        "action": entry["action"],
        "who": entry["who"],
        "why": entry["why"],
        **(entry.get("details") or {}),
    }
