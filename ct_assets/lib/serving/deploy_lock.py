"""One change to a deployment at a time, across processes and threads.

A rollout (`ct deploy start`, a Dagster run, the operator API), an approval, a rollback, `ct deploy
stop` and the watchdog's failover each hold the deployment folder's lock file (`deploy.lock`, an
exclusive `flock`) while they act. Another one is refused at once with `DeploymentBusy`, whose
message names the holder (pid, action, who, since when), instead of waiting behind a canary or
tearing down its slot. The kernel releases the lock when its holder's process dies, so a killed
`ct deploy start` leaves nothing to clean up.

Within one process the thread that holds the lock may take it again (`ct deploy start` holds it
through the rollout it calls); any other thread is refused as another process would be.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LOCK_FILE = "deploy.lock"


class DeploymentBusy(RuntimeError):
    """Another process or thread is changing the deployment (the message names it)."""


@dataclass
class _Held:
    thread: int
    fd: int
    depth: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def deployment_lock(folder: Path, action: str, who: str) -> Iterator[None]:
    """Hold `folder`'s deployment lock for `action` by `who`, or raise `DeploymentBusy` at once."""
    path = (Path(folder) / LOCK_FILE).resolve()
    with _guard:
        held = _held.get(path)
        if held is None:
            held = _Held(threading.get_ident(), _take(path, action), 0)
            try:
                _write_holder(held.fd, action, who)
            except OSError:
                os.close(held.fd)  # releases the flock: a lock that could not be recorded is not held
                raise
            _held[path] = held
        elif held.thread != threading.get_ident():
            raise DeploymentBusy(busy_message(path, action))
        held.depth += 1
    try:
        yield
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0:
                del _held[path]
                os.close(held.fd)  # closing the only descriptor releases the flock


def _take(path: Path, action: str) -> int:
    """An open descriptor of `path` that holds its exclusive flock (DeploymentBusy when another does)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DeploymentBusy(busy_message(path, action)) from None
    return fd


def _write_holder(fd: int, action: str, who: str) -> None:
    holder = {
        "pid": os.getpid(),
        "action": action,
        "who": who,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def holder(path: Path) -> dict[str, object] | None:
    """What the lock file says about its holder (None when it is empty or unreadable)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def busy_message(path: Path, wanted: str) -> str:
    """One line: the deployment is busy, what holds it, and that `wanted` is refused."""
    found = holder(path)
    if found is None:
        held_by = "another process holds its lock"
    else:
        held_by = (
            f"pid {found.get('pid')} holds it since {found.get('since')} "
            f"({found.get('action')} by {found.get('who')})"
        )
    return f"the {path.parent.name} deployment is busy: {held_by}; {wanted} refused, try again when that ends"
