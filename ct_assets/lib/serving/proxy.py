"""The reverse proxy in front of the two serving slots: HAProxy from Debian's package.

HAProxy was chosen over nginx because its runtime API changes server weights through an admin
socket with no reload, so a canary share, a blue-green switch and a rollback are each one command
and never drop a connection.

When a slot dies (its process killed, its port closed):
- a request that cannot connect to it, or gets no answer (connection reset, empty or truncated
  response), is retried up to 3 times and sent to another server each time (`retry-on`,
  `option redispatch 1`; such layer-7 retries need the whole request in HAProxy's buffer first,
  `option http-buffer-request`): a prediction has no side effect but its log rows, so replaying it is
  safe;
- the first refused connection on live traffic marks the slot DOWN at once (`observe layer4`), and the
  health check (`GET /readyz` every 500 ms, 2 failures) catches a slot that hangs;
- each slot is listed twice: as itself, with the weight the rollout gives it, and as a `backup` entry
  that tracks its health. Backups take traffic only when no weighted slot is UP, so when the active
  slot dies, the standby (still running at weight 0 after a switch) answers at once, before any
  controller acts (`ct_assets.lib.serving.watchdog` then makes the failover official). A slot's backup entry
  is enabled only once its bento has served as the active one (`set_standby`): a candidate that has
  not passed its checks never gets traffic this way.

`haproxy.log` in the proxy folder lists only abnormal requests (errors, retries, redispatches), with
HAProxy's termination state (`option dontlog-normal`), and the slots' state changes.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SLOTS = ("blue", "green")
BACKEND = "serving"


@dataclass(frozen=True)
class ProxyLayout:
    """Ports and files of one pipeline's proxy."""

    folder: Path
    port: int
    slot_ports: dict[str, int]

    @property
    def config(self) -> Path:
        return self.folder / "haproxy.cfg"

    @property
    def socket(self) -> Path:
        return self.folder / "admin.sock"

    @property
    def pidfile(self) -> Path:
        return self.folder / "haproxy.pid"


STANDBY = "_standby"  # suffix of each slot's backup entry
HEALTH = "check inter 500ms fastinter 200ms fall 2 rise 2 observe layer4 error-limit 1 on-error mark-down"


def render_config(layout: ProxyLayout, weights: dict[str, int]) -> str:
    servers = "\n".join(
        f"    server {slot} 127.0.0.1:{port} weight {weights.get(slot, 0)} {HEALTH}"
        for slot, port in layout.slot_ports.items()
    )
    backups = "\n".join(
        f"    server {slot}{STANDBY} 127.0.0.1:{port} backup track {BACKEND}/{slot}"
        + ("" if weights.get(slot, 0) else " disabled")
        for slot, port in layout.slot_ports.items()
    )
    return f"""global
    stats socket {layout.socket} mode 600 level admin
    maxconn 2048
    log stderr format iso local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    retry-on conn-failure empty-response junk-response response-timeout
    option http-buffer-request
    option redispatch 1
    # Keep-alive to the slots, idle connections shared by all clients: no TCP handshake and accept
    # per request (a closed idle connection is retried on another by retry-on conn-failure).
    http-reuse always

frontend stable
    bind 127.0.0.1:{layout.port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers}
{backups}
"""


def find_haproxy() -> str | None:
    """HAProxy's binary (on PATH, or Debian's /usr/sbin, which a non-root PATH may lack), or None."""
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def haproxy_binary() -> str:
    found = find_haproxy()
    if found is None:
        raise RuntimeError("haproxy is not installed: apt-get install -y haproxy (scripts do this as root)")
    return found


def start(layout: ProxyLayout, weights: dict[str, int]) -> subprocess.Popen:
    """Write the config and start HAProxy in the foreground (as a child process)."""
    layout.folder.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(render_config(layout, weights))
    layout.socket.unlink(missing_ok=True)
    process = subprocess.Popen(
        [haproxy_binary(), "-W", "-db", "-f", str(layout.config)],
        stdout=subprocess.DEVNULL,
        stderr=(layout.folder / "haproxy.log").open("a"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while not layout.socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"haproxy did not start: {(layout.folder / 'haproxy.log').read_text()[-1000:]}"
            )
        time.sleep(0.05)
    return process


def command(layout: ProxyLayout, line: str) -> str:
    """One runtime-API command over the admin socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect(str(layout.socket))
        connection.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def set_weights(layout: ProxyLayout, weights: dict[str, int]) -> None:
    """Change the traffic split now, without a reload (the weight of 0 takes a slot out)."""
    for slot, weight in weights.items():
        reply = command(layout, f"set server {BACKEND}/{slot} weight {int(weight)}")
        if reply.strip():
            raise RuntimeError(f"haproxy refused weight {weight} for {slot}: {reply.strip()}")


def set_standby(layout: ProxyLayout, slot: str, enabled: bool) -> None:
    """Enable or disable the slot's backup entry (a proxy started by an older config has none)."""
    state = "ready" if enabled else "maint"
    reply = command(layout, f"set server {BACKEND}/{slot}{STANDBY} state {state}").strip()
    if reply and "No such server" not in reply:
        raise RuntimeError(f"haproxy refused state {state} for {slot}{STANDBY}: {reply}")


def server_stats(layout: ProxyLayout) -> dict[str, dict[str, str]]:
    """HAProxy's counters per slot (requests, 5xx, response times, weight, status)."""
    text = command(layout, "show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {row["svname"]: row for row in rows if row.get("pxname") == BACKEND and row["svname"] in SLOTS}
