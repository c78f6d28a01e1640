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
  health check catches a slot that hangs: `GET /alive` every 500 ms on the slot's health port, which
  each worker answers from a thread of its own while its event loop keeps turning
  (`ct_assets.lib.serving.liveness`), so a slot busy with large bodies stays UP; a check may take
  3 s and a slot is marked down after 3 failed checks in a row;
- each slot is listed twice: as itself, with the weight the rollout gives it, and as a `backup` entry
  that tracks its health. Backups take traffic only when no weighted slot is UP, so when the active
  slot dies, the standby (still running at weight 0 after a switch) answers at once, before any
  controller acts (`ct_assets.lib.serving.watchdog` then makes the failover official). A slot's backup entry
  is enabled only once its bento has served as the active one (`set_standby`): a candidate that has
  not passed its checks never gets traffic this way.

The routing (each slot's weight, which backup entries are enabled) is kept in `routing.json` and
written into `haproxy.cfg` whenever it changes through the admin socket, so a proxy restarted by its
supervisor (`ct_assets.lib.serving.proxy_supervisor`) comes back with the current routing.

HAProxy's own answers (503 when no slot is up, 502, 504) are JSON in the shape of every refusal, with
the request id, which the proxy also passes on to the slot (`ct_assets.lib.serving.proxy_errors`).

`haproxy.log` in the proxy folder lists only abnormal requests (errors, retries, redispatches), with
HAProxy's termination state (`option dontlog-normal`), and the slots' state changes.

Waiting is bounded: each slot takes at most `SLOT_MAXCONN` requests at once from the proxy (below the
service's own admission limit, so the proxy queues rather than the slot refusing with a 429); at most
`SLOT_MAXQUEUE` more wait in the proxy's queue for it, each for at most `QUEUE_TIMEOUT` (then a 503).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.serving import liveness, proxy_errors

SLOTS = ("blue", "green")
BACKEND = "serving"


@dataclass(frozen=True)
class ProxyLayout:
    """Ports and files of one pipeline's proxy."""

    folder: Path
    port: int
    slot_ports: dict[str, int]
    # each slot's liveness port (`liveness`); by default its serving port + HEALTH_PORT_OFFSET
    health_ports: dict[str, int] = field(default_factory=dict)

    def health_port(self, slot: str) -> int:
        if slot in self.health_ports:
            return self.health_ports[slot]
        port = self.slot_ports[slot]
        return port + HEALTH_PORT_OFFSET if port + HEALTH_PORT_OFFSET <= 65535 else port - HEALTH_PORT_OFFSET

    @property
    def config(self) -> Path:
        return self.folder / "haproxy.cfg"

    @property
    def sockets(self) -> Path:
        """The folder of the proxy's Unix sockets (HAProxy's admin socket, circus's endpoints).

        A socket's path must fit in 107 bytes (`sun_path`), which a deep home overruns, so the
        sockets live in a short per-user folder under the temporary directory, named by a hash
        of the proxy folder: every process of this deployment finds the same one, and two homes
        never share one."""
        digest = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"ct-{os.getuid()}-{digest}"

    @property
    def socket(self) -> Path:
        return self.sockets / "admin.sock"

    def make_sockets_folder(self) -> None:
        """Create the sockets folder, private to this user; refuse one that another user owns."""
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        owner = self.sockets.stat().st_uid
        if owner != os.getuid():
            raise PermissionError(f"{self.sockets} belongs to user {owner}, not to this user")
        os.chmod(self.sockets, 0o700)

    @property
    def pidfile(self) -> Path:
        return self.folder / "haproxy.pid"

    @property
    def routing(self) -> Path:
        return self.folder / "routing.json"


class ProxyDown(RuntimeError):
    """The proxy does not answer on its admin socket."""


@dataclass
class Routing:
    """What the proxy routes where: each slot's weight, and the slots whose backup entry is enabled."""

    weights: dict[str, int]
    standby: set[str]


STANDBY = "_standby"  # suffix of each slot's backup entry
HEALTH_PORT_OFFSET = 1000
SLOT_MAXCONN = 48
SLOT_MAXQUEUE = 512
QUEUE_TIMEOUT = "10s"
HEALTH = (
    f"check inter 500ms fastinter 200ms fall 3 rise 2 observe layer4 error-limit 1 on-error mark-down "
    f"maxconn {SLOT_MAXCONN} maxqueue {SLOT_MAXQUEUE}"
)


def render_config(layout: ProxyLayout, weights: dict[str, int], standby: set[str] | None = None) -> str:
    """HAProxy's config; a slot's backup entry is enabled when it is in `standby` (by default: when the
    slot has weight)."""
    enabled = {s for s in layout.slot_ports if weights.get(s, 0)} if standby is None else standby
    servers = "\n".join(
        f"    server {slot} 127.0.0.1:{port} weight {weights.get(slot, 0)} {HEALTH}"
        f" port {layout.health_port(slot)}"
        for slot, port in layout.slot_ports.items()
    )
    backups = "\n".join(
        f"    server {slot}{STANDBY} 127.0.0.1:{port} backup track {BACKEND}/{slot}"
        + ("" if slot in enabled else " disabled")
        for slot, port in layout.slot_ports.items()
    )
    errors = "".join(f"    {line}\n" for line in proxy_errors.defaults_lines(QUEUE_TIMEOUT))
    request_id = "".join(f"    {line}\n" for line in proxy_errors.frontend_lines())
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
    timeout check 3s
    timeout queue {QUEUE_TIMEOUT}
    retries 3
    retry-on conn-failure empty-response junk-response response-timeout
    option http-buffer-request
    option redispatch 1
    # Keep-alive to the slots, idle connections shared by all clients: no TCP handshake and accept
    # per request (a closed idle connection is retried on another by retry-on conn-failure).
    http-reuse always
    # HAProxy's own errors as JSON with the request id (`ct_assets.lib.serving.proxy_errors`)
{errors}
frontend stable
    bind 127.0.0.1:{layout.port}
{request_id}    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET {liveness.PATH}
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
    layout.make_sockets_folder()
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
    """One runtime-API command over the admin socket (`ProxyDown` when nothing answers there)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(layout.socket))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError as err:
        raise ProxyDown(
            f"the proxy on port {layout.port} is down (no answer on {layout.socket}: "
            f"{type(err).__name__}); `ct deploy status` shows its supervisor"
        ) from err
    return b"".join(chunks).decode()


def saved_routing(layout: ProxyLayout) -> Routing | None:
    """The routing last applied (None before the first)."""
    try:
        saved = json.loads(layout.routing.read_text())
    except (OSError, ValueError):
        return None
    return Routing({s: int(w) for s, w in saved["weights"].items()}, set(saved["standby"]))


def write_config(layout: ProxyLayout, routing: Routing) -> None:
    """Record `routing` and render it into the config HAProxy reads when it (re)starts."""
    layout.folder.mkdir(parents=True, exist_ok=True)
    document = {"weights": routing.weights, "standby": sorted(routing.standby)}
    write_atomically(layout.routing, json.dumps(document).encode(), mode=0o600)
    write_atomically(
        layout.config, render_config(layout, routing.weights, routing.standby).encode(), mode=0o600
    )


def _remember(
    layout: ProxyLayout, weights: dict[str, int] | None = None, standby: dict[str, bool] | None = None
) -> None:
    routing = saved_routing(layout) or Routing({s: 0 for s in layout.slot_ports}, set())
    routing.weights.update(weights or {})
    for slot, enabled in (standby or {}).items():
        (routing.standby.add if enabled else routing.standby.discard)(slot)
    write_config(layout, routing)


def set_weights(layout: ProxyLayout, weights: dict[str, int]) -> None:
    """Change the traffic split now, without a reload (the weight of 0 takes a slot out)."""
    _remember(layout, weights={s: int(w) for s, w in weights.items()})
    for slot, weight in weights.items():
        reply = command(layout, f"set server {BACKEND}/{slot} weight {int(weight)}")
        if reply.strip():
            raise RuntimeError(f"haproxy refused weight {weight} for {slot}: {reply.strip()}")


def set_standby(layout: ProxyLayout, slot: str, enabled: bool) -> None:
    """Enable or disable the slot's backup entry."""
    _remember(layout, standby={slot: enabled})
    state = "ready" if enabled else "maint"
    reply = command(layout, f"set server {BACKEND}/{slot}{STANDBY} state {state}").strip()
    if reply:
        raise RuntimeError(f"haproxy refused state {state} for {slot}{STANDBY}: {reply}")


def server_stats(layout: ProxyLayout) -> dict[str, dict[str, str]]:
    """HAProxy's counters per slot (requests, 5xx, response times, weight, status)."""
    text = command(layout, "show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {row["svname"]: row for row in rows if row.get("pxname") == BACKEND and row["svname"] in SLOTS}


def stats_if_up(layout: ProxyLayout) -> dict[str, dict[str, str]]:
    """`server_stats`, or nothing when no proxy answers (never started, stopped, or dead with its
    socket file left behind)."""
    if not layout.socket.exists():
        return {}
    try:
        return server_stats(layout)
    except (OSError, ProxyDown):
        return {}


def wait_until_up(layout: ProxyLayout, slot: str, timeout: float) -> None:
    """Wait until the proxy's own health check sees `slot` UP; RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_stats(layout).get(slot, {}).get("status", "").startswith("UP"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"the proxy on port {layout.port} never saw slot {slot} healthy in {timeout:.0f} s")
