"""Is a process still there? Used to tell a run whose worker was killed from one still running.

A process id can be reused after its process is gone, so a caller may pass the time by which the
process it means had started: a live process that started later is someone else (Linux `/proc`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import time
from pathlib import Path


@functools.cache  # fixed until the machine reboots; read on every started_at otherwise
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def started_at(pid: int) -> float | None:
    """When the process started (epoch seconds), or None if it is gone or unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def is_running(pid: int, started_before: float | None = None) -> bool:
    """True when `pid` is a live process (not a zombie) that, if `started_before` is given, had
    started by then (1 s of slack for clock rounding)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except (OSError, IndexError):
            pass
    if started_before is not None:
        began = started_at(pid)
        if began is not None and began > started_before + 1.0:
            return False
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.05)
    return not is_running(pid)


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, their children...), from `/proc`. Some servers
    (BentoML's workers under circus) start their children in new sessions, so a signal to the
    parent's process group does not reach them: callers collect them first, then signal each group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def with_environment(name: str, value: str) -> list[int]:
    """Every live process started with `name=value` in its environment (inherited by its children),
    from `/proc/<pid>/environ`: finds a server's workers even after the server died and they were
    reparented away from it. Processes whose environment cannot be read are skipped."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


def signal_tree(pid: int, signum: int, tree: list[int] | None = None) -> None:
    """Send `signum` to the process group of `pid` and to the group of every process in `tree`
    (default: its descendants now)."""
    groups = []
    for member in [pid, *(descendants(pid) if tree is None else tree)]:
        with contextlib.suppress(OSError):
            group = os.getpgid(member)
            if group not in groups:
                groups.append(group)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def wait_until_answers(
    url: str, process: subprocess.Popen, what: str, timeout: float, interval: float = 0.3
) -> None:
    """Poll `url` until it answers 200; raise if `process` exits first or `timeout` passes."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f} s")
