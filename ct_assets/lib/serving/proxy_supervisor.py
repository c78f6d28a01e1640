"""The proxy's supervisor: circus (the process manager BentoML already runs its workers under)
keeps HAProxy running, restarting it within a fraction of a second when it dies, whatever the signal.

`circusd` runs detached in its own session, so the proxy outlives the `ct` command that started it
(a deployment keeps serving between commands). While that command lives (`ct deploy ops` does), a
thread of it waits for circusd, so a circusd killed under it is reaped at once, never left a zombie.
A pid file whose pid is not a live circusd for this folder (a dead one, or a reused pid) is removed
before a start: circus itself refuses to start while the pid in its pid file names any process.

Its one watcher runs `run.sh` in the proxy folder, which appends the start time to `starts.log` and
then becomes HAProxy (`exec`, foreground, no master-worker: circus is the master). The arbiter looks
at its watchers every `CHECK_DELAY` seconds, which bounds the restart time.

HAProxy reads `haproxy.cfg` at every start, and `ct_assets.lib.serving.proxy` rewrites that file
whenever the weights or a standby entry change: a restarted proxy comes back with the current
routing and needs nothing re-applied. HAProxy's log (its stderr) goes through circus into
`haproxy.log`, rotated by size (`LOG_MAX_BYTES`, `LOG_BACKUPS` older files kept).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ct_assets.lib.core import processes
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.proxy import ProxyLayout

CHECK_DELAY = 0.2  # seconds between two looks of the circus arbiter at its watcher


@dataclass(frozen=True)
class SupervisorFiles:
    folder: Path

    @property
    def ini(self) -> Path:
        return self.folder / "circus.ini"

    @property
    def script(self) -> Path:
        return self.folder / "run.sh"

    @property
    def pidfile(self) -> Path:
        return self.folder / "circusd.pid"

    @property
    def starts(self) -> Path:
        return self.folder / "starts.log"

    @property
    def log(self) -> Path:
        return self.folder / "circus.log"


LOG_MAX_BYTES = 20 * 2**20
LOG_BACKUPS = 3


def render_script(layout: ProxyLayout) -> str:
    return (
        "#!/bin/sh\n"
        "# Run by circusd: note the start, then become HAProxy (foreground, circus is the master).\n"
        f"date -u +%Y-%m-%dT%H:%M:%S.%6NZ >> '{SupervisorFiles(layout.folder).starts}'\n"
        f"exec '{proxy.haproxy_binary()}' -db -f '{layout.config}' > /dev/null\n"
    )


def render_ini(layout: ProxyLayout) -> str:
    files = SupervisorFiles(layout.folder)
    return f"""[circus]
check_delay = {CHECK_DELAY}
endpoint = ipc://{layout.sockets / "circus.sock"}
pubsub_endpoint = ipc://{layout.sockets / "circus-pubsub.sock"}
statsd = False
umask = 077
pidfile = {files.pidfile}
logoutput = {files.log}
loglevel = WARNING

[watcher:haproxy]
cmd = /bin/sh
args = {files.script}
numprocesses = 1
respawn = True
max_retry = -1
graceful_timeout = 2
copy_env = True
# HAProxy's log (its stderr), rotated by size by circus
stderr_stream.class = FileStream
stderr_stream.filename = {layout.folder / "haproxy.log"}
stderr_stream.max_bytes = {LOG_MAX_BYTES}
stderr_stream.backup_count = {LOG_BACKUPS}
"""


def _is_our_circusd(pid: int, files: SupervisorFiles) -> bool:
    """Is `pid` a circusd running this folder's `circus.ini` (named relative to its own cwd, maybe)?"""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"circus.circusd" not in argv:
        return False
    for arg in argv[argv.index(b"circus.circusd") + 1 :]:
        with contextlib.suppress(OSError):
            if (Path(f"/proc/{pid}/cwd") / os.fsdecode(arg)).samefile(files.ini):
                return True
    return False


def is_supervisor(layout: ProxyLayout, pid: int) -> bool:
    """Is `pid` a running circusd of this proxy folder (not a process that reused its pid)?"""
    return processes.is_running(pid) and _is_our_circusd(pid, SupervisorFiles(layout.folder))


def supervisor_pid(layout: ProxyLayout) -> int | None:
    """The running circusd's pid for this proxy folder (None when it is not running, or when the pid
    file names another process: a pid is reused once its process is gone)."""
    files = SupervisorFiles(layout.folder)
    try:
        pid = int(files.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if is_supervisor(layout, pid) else None


def answers(layout: ProxyLayout) -> bool:
    """True when HAProxy answers on its admin socket."""
    try:
        proxy.command(layout, "show info")
    except proxy.ProxyDown:
        return False
    return True


def wait_answers(layout: ProxyLayout, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(layout):
            return True
        time.sleep(0.05)
    return answers(layout)


def remove_stale_pidfile(layout: ProxyLayout) -> bool:
    """Remove circusd's pid file unless its pid is a live circusd for this folder; True if removed."""
    pidfile = SupervisorFiles(layout.folder).pidfile
    if not pidfile.exists() or supervisor_pid(layout) is not None:
        return False
    pidfile.unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 3) -> str:
    """The last non-empty lines of a log as one line ("|" between them)."""
    try:
        text = path.read_text(errors="replace")[-4000:]
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(empty)"


def start(layout: ProxyLayout, weights: dict[str, int], timeout: float = 20) -> int:
    """Write HAProxy's config with `weights` (a slot with weight is also a standby) and start circusd,
    detached, which starts HAProxy; returns circusd's pid once HAProxy answers (within `timeout`
    seconds, or RuntimeError naming the tail of both logs, one line each)."""
    layout.folder.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.folder, 0o700)
    proxy.write_config(layout, proxy.Routing(dict(weights), {s for s, w in weights.items() if w}))
    files = SupervisorFiles(layout.folder)
    files.script.write_text(render_script(layout))
    files.ini.write_text(render_ini(layout))
    files.starts.unlink(missing_ok=True)  # restarts are counted per supervisor
    remove_stale_pidfile(layout)
    layout.make_sockets_folder()
    layout.socket.unlink(missing_ok=True)
    with files.log.open("a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "circus.circusd", str(files.ini)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not answers(layout):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(
                "haproxy did not start under circus\n"
                f"  {files.log}: {_tail(files.log)}\n"
                f"  {layout.folder / 'haproxy.log'}: {_tail(layout.folder / 'haproxy.log')}"
            )
        time.sleep(0.05)
    threading.Thread(target=process.wait, name=f"reap circusd {process.pid}", daemon=True).start()
    return process.pid


def starts(layout: ProxyLayout) -> list[str]:
    """When HAProxy was started under this supervisor (UTC ISO times, oldest first)."""
    path = SupervisorFiles(layout.folder).starts
    return path.read_text().split() if path.exists() else []


def status(layout: ProxyLayout) -> dict[str, object]:
    """The proxy's health: supervisor running, HAProxy answering (its pid and uptime), how often it
    was started and when it was last restarted."""
    info: dict[str, str] = {}
    try:
        for line in proxy.command(layout, "show info").splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except proxy.ProxyDown as err:
        info = {"error": str(err)}
    started = starts(layout)
    return {
        "supervisor_pid": supervisor_pid(layout),
        "up": "Pid" in info,
        "pid": int(info["Pid"]) if "Pid" in info else None,
        "uptime_s": int(info["Uptime_sec"]) if "Uptime_sec" in info else None,
        "starts": len(started),
        "last_restart": started[-1] if len(started) > 1 else None,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"error": info["error"]} if "error" in info else {}),
    }
