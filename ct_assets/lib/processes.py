"""Is a process still there? Used to tell a run whose worker was killed from one still running.

A process id can be reused after its process is gone, so a caller may pass the time by which the
process it means had started: a live process that started later is someone else (Linux `/proc`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


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
