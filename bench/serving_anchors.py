"""The serving benchmark's anchors: what a single-row request costs with no model behind it.

Two servers, each behind its own HAProxy running the slot's configuration (`proxy.start`, the
config `proxy.render_config` renders for the deployment, this server as the active slot and no
standby), started with the slot's environment (worker count, allocator preload, health port):

- `bare ASGI`: a raw ASGI callable under uvicorn (`anchor_asgi`), `--workers` as the slot;
- `BentoML hello`: a BentoML 1.4 service with one `@bentoml.api` returning a constant
  (`anchor_hello`), served by `bentoml serve` with the slot's worker count.

Both answer the same fixed JSON (`anchor_answer`); the benchmark sends them the slot's single-row
bodies with the same sender, rate and duration, through their proxy and straight to them, and takes
their CPU per request the way it takes the slot's (the server's process tree, psutil).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from serving_setup import free_ports

from ct_assets.lib.core.processes import wait_until_answers
from ct_assets.lib.serving import proxy
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.slots import INSTANCE_VARIABLE, terminate_group
from ct_assets.lib.serving.traffic import WEIGHT_SCALE

HERE = Path(__file__).resolve().parent
BARE, HELLO = "bare ASGI", "BentoML hello"


@dataclass
class Anchor:
    """One running anchor: its server, its proxy and the two routes' base URLs."""

    name: str
    server: subprocess.Popen
    proxy: subprocess.Popen
    instance: str
    urls: dict[str, str]  # route name -> base URL

    def pids(self) -> list[int]:
        """The server's root process (its workers are below it)."""
        return [self.server.pid]


def _command(name: str, port: int, workers: int) -> list[str]:
    bin_folder = Path(sys.executable).parent
    if name == BARE:
        return [
            str(bin_folder / "uvicorn"), "anchor_asgi:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log", "--no-server-header",
            "--log-level", "warning",
        ]  # fmt: skip
    return [
        str(bin_folder / "bentoml"), "serve", "anchor_hello:HelloService", "--working-dir", str(HERE),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def start_anchor(name: str, folder: Path, workers: int, routes: tuple[str, str]) -> Anchor:
    """Start the anchor `name` and its proxy; wait until the proxy sees it up. `routes` names the
    (through the proxy, straight) routes as the benchmark does."""
    stable, port, spare, health, spare_health = free_ports(5)
    layout = ProxyLayout(
        folder / "proxy", stable, {"blue": port, "green": spare}, {"blue": health, "green": spare_health}
    )
    instance = uuid.uuid4().hex
    env = {
        **os.environ,
        "CT_SERVICE_WORKERS": str(workers),
        "CT_HEALTH_PORT": str(health),
        INSTANCE_VARIABLE: instance,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    env.update(allocator_env(env))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "server.log").open("ab") as log:
        server = subprocess.Popen(
            _command(name, port, workers),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", server, f"{name} on port {port}", timeout=120)
        haproxy = proxy.start(layout, {"blue": WEIGHT_SCALE, "green": 0})
    except BaseException:
        terminate_group(server.pid, timeout=10, instance=instance)
        raise
    anchor = Anchor(
        name, server, haproxy, instance,
        {routes[0]: f"http://127.0.0.1:{stable}", routes[1]: f"http://127.0.0.1:{port}"},
    )  # fmt: skip
    try:
        proxy.wait_until_up(layout, "blue", timeout=30)
    except BaseException:
        stop_anchor(anchor)
        raise
    return anchor


def stop_anchor(anchor: Anchor) -> None:
    terminate_group(anchor.proxy.pid, timeout=5)
    terminate_group(anchor.server.pid, timeout=10, instance=anchor.instance)


@contextlib.contextmanager
def running_anchors(root: Path, workers: int, routes: tuple[str, str]) -> Iterator[dict[str, Anchor]]:
    """Both anchors, started one after the other and always stopped at the end."""
    anchors: dict[str, Anchor] = {}
    try:
        for name in (HELLO, BARE):
            anchors[name] = start_anchor(name, root / name.replace(" ", "_"), workers, routes)
        yield anchors
    finally:
        for anchor in anchors.values():
            stop_anchor(anchor)
