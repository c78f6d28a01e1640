"""Blue-green rollout with a canary behind a real HAProxy and real `bentoml serve` slots on loopback:
zero failed requests through a switch and a rollback, a 10% canary share, and automatic rollback of
a slow candidate and of one that cannot reproduce the evaluation's scores."""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from ct_assets.lib.core import processes
from ct_assets.lib.core.processes import descendants
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.allocator import allocator_env
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment, HealthPolicy
from ct_assets_tests.bentos.test_service import DAYS, served  # noqa: F401 - the shared fixture
from ct_assets_tests.conftest import free_ports, requires_haproxy
from ct_assets_tests.lib.serving.test_predictor import request_rows

pytestmark = [pytest.mark.slow, requires_haproxy]
POLICY = HealthPolicy(
    canary_share=0.1,
    window_seconds=10,
    min_requests=5,
    max_error_rate=0.0,
    max_p99_ms=350,
    max_score_shift=0.5,
)


class Traffic:
    """A client sending one-row requests (cycling through real rows) to the stable port until
    stopped, bounded in count."""

    def __init__(self, url: str, rows: list[dict], limit: int = 20_000) -> None:
        self.url, self.rows, self.limit = url, rows, limit
        self.answers: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and len(self.answers) < self.limit:
                try:
                    row = self.rows[len(self.answers) % len(self.rows)]
                    response = client.post(f"{self.url}/predict", json={"rows": [row]})
                    version = response.json().get("model_version") if response.status_code == 200 else None
                    self.answers.append((response.status_code, version))
                except httpx.HTTPError as err:
                    self.answers.append((0, type(err).__name__))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    @property
    def failures(self) -> list:
        return [a for a in self.answers if a[0] != 200]


@pytest.fixture(scope="module")
def deployment(served):  # noqa: F811 - pytest fixture injection
    spec, con, registry = served["spec"], served["con"], served["registry"]
    root = served["root"]
    second = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(second.version, verdict={"passed": True, "reasons": [], "notes": ["test"]})
    first_record = registry.get("v0001")
    second_record = registry.get(second.version)
    bentos = {
        r.version: str(bento_build.build(spec, r, registry.models / f"{r.model_sha256}.cbm").tag)
        for r in (first_record, second_record)
    }
    stable, blue, green, blue_check, green_check = free_ports(5)
    layout = ProxyLayout(
        root / "proxy", stable, {"blue": blue, "green": green}, {"blue": blue_check, "green": green_check}
    )
    env = {"CT_ONLINE_SNAPSHOT": str(root / "online"), "CT_PREDICTION_LOG": str(root / "log")}
    deploy = Deployment(root / "deploy", layout, env, str(Path(sys.executable).parent / "bentoml"))
    rows = request_rows(con, spec, DAYS[-1], 100)
    expected = deploy_steps.reference_scores(con, spec, first_record, registry, rows, [DAYS[-1]])
    first = deploy.rollout(bentos["v0001"], (rows, expected), expected, POLICY, who="test")
    assert first.status == "switched", first.reasons
    yield {
        "deploy": deploy,
        "bentos": bentos,
        "rows": rows,
        "expected": expected,
        "url": f"http://127.0.0.1:{stable}",
        "second": second.version,
    }
    deploy.shutdown()


def test_switch_and_operator_rollback_lose_no_request(deployment) -> None:
    deploy, bentos, rows, expected = (deployment[k] for k in ("deploy", "bentos", "rows", "expected"))
    with Traffic(deployment["url"], rows) as traffic:
        result = deploy.rollout(bentos[deployment["second"]], (rows, expected), expected, POLICY, who="test")
        switched_at = len(traffic.answers)
        assert result.status == "switched", (result.reasons, result.health)
        rolled = deploy.rollback_to_previous(who="ann", why="customers report odd scores")
        assert rolled.status == "rolled_back"
        while len(traffic.answers) < switched_at + 50:
            time.sleep(0.05)
    assert traffic.failures == [], traffic.failures[:5]
    versions = [v for _, v in traffic.answers]
    assert {"v0001", deployment["second"]} <= set(versions)
    assert versions[-1] == "v0001"
    actions = [e["action"] for e in deploy.audit_log()]
    assert actions[-4:] == ["rollout_started", "canary", "switch", "rollback"]
    assert deploy.audit_log()[-1]["who"] == "ann"


def _tree_maps(root: int) -> list[str]:
    """The memory maps of a process and all its descendants."""
    maps = []
    for pid in [root, *descendants(root)]:
        with contextlib.suppress(OSError):  # the process ended meanwhile
            maps.append(Path(f"/proc/{pid}/maps").read_text())
    return maps


def test_slot_processes_run_with_the_chosen_allocator(deployment) -> None:
    state = deployment["deploy"].state()
    slot = state.slots[state.active]
    expected = allocator_env()["CT_SLOT_ALLOCATOR"]
    answer = httpx.post(f"http://127.0.0.1:{slot.port}/version", json={}, timeout=10).json()
    assert answer["allocator"] == expected
    maps = _tree_maps(slot.pid)
    assert len(maps) >= 2  # `bentoml serve` and its workers
    assert all(("libtcmalloc" in m) == (expected == "tcmalloc") for m in maps)


def test_canary_share_is_ten_percent(deployment) -> None:
    deploy = deployment["deploy"]
    state = deploy.state()
    active = state.active
    idle = "green" if active == "blue" else "blue"
    deploy.start_slot(idle, deployment["bentos"][deployment["second"]])
    try:
        deploy.route({active: 0.9, idle: 0.1})
        with httpx.Client(timeout=10) as client:
            # the cheap /version answer carries the slot too; routing does not depend on the path
            slots = [client.post(f"{deployment['url']}/version", json={}).json()["slot"] for _ in range(2000)]
        share = slots.count(idle) / len(slots)
        assert 0.07 <= share <= 0.13, share
    finally:
        deploy.route({active: 1.0})
        deploy.stop_slot(idle)


@pytest.mark.parametrize(
    ("extra_env", "reason"),
    [
        ({"CT_INJECT_LATENCY_MS": "400"}, "p99 latency"),
        ({"CT_ONLINE_SNAPSHOT": "/nonexistent/snapshot"}, "the new slot did not start"),
        ("stale snapshot", "inference compatibility"),
    ],
)
def test_a_bad_candidate_is_rolled_back_automatically(deployment, extra_env, reason, tmp_path) -> None:
    deploy = deployment["deploy"]
    if extra_env == "stale snapshot":  # it starts and answers, but with weather from nowhere
        stale = tmp_path / "stale"
        shutil.copytree(deploy.slot_env["CT_ONLINE_SNAPSHOT"], stale)
        weather = stale / "weather.parquet"
        duckdb.execute(f"COPY (SELECT * FROM read_parquet('{weather}') LIMIT 0) TO '{stale}/w.parquet'")
        (stale / "w.parquet").replace(weather)
        extra_env = {"CT_ONLINE_SNAPSHOT": str(stale)}
    active_before = deploy.state().active
    with Traffic(deployment["url"], deployment["rows"]) as traffic:
        result = deploy.rollout(
            deployment["bentos"][deployment["second"]],
            (deployment["rows"], deployment["expected"]),
            deployment["expected"],
            POLICY,
            who="test",
            extra_env=extra_env,
        )
    assert result.status == "rolled_back" and reason in "; ".join(result.reasons), result.reasons
    assert deploy.state().active == active_before
    assert traffic.failures == [], traffic.failures[:5]  # the stable port never answered an error
    assert deploy.audit_log()[-1]["action"] == "rollback" and deploy.audit_log()[-1]["automatic"]


ORPHANING_SERVER = """
import subprocess, sys, time
port = sys.argv[sys.argv.index("--port") + 1]
holder = (  # a worker in a session of its own that holds the slot's port, as BentoML's workers do
    "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); "
    "open(sys.argv[2], 'w').write('bound'); time.sleep(60)"
)
marker = sys.argv[2]  # where the bento tag would be
subprocess.Popen([sys.executable, "-c", holder, port, marker], start_new_session=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not open(marker).read():
    time.sleep(0.05)
sys.exit(1)  # the server dies; its worker lives on, no longer below it
"""


def test_stopping_a_slot_whose_server_died_also_stops_its_orphaned_workers(tmp_path: Path) -> None:
    """A candidate that fails to start can leave a worker holding the slot's port (its server has
    exited, so the worker is not among its descendants); the next start on that slot must still
    bind. Every process of a start carries CT_SLOT_INSTANCE, and stopping the slot finds them by it."""
    marker = tmp_path / "bound"
    marker.write_text("")
    server = tmp_path / "bentoml"
    server.write_text(f"#!{sys.executable}\n{ORPHANING_SERVER}")
    server.chmod(0o755)
    (port,) = free_ports(1)
    layout = ProxyLayout(tmp_path / "proxy", free_ports(1)[0], {"blue": free_ports(1)[0], "green": port})
    deploy = Deployment(tmp_path / "deploy", layout, {}, str(server))
    with pytest.raises(RuntimeError, match="exited with 1"):
        deploy.start_slot("green", str(marker))
    assert marker.read_text() == "bound"
    instance = deploy.state().slots["green"].instance
    (orphan,) = processes.with_environment("CT_SLOT_INSTANCE", instance)
    deploy.stop_slot("green")
    assert processes.wait_gone(orphan, timeout=10)
    with socket.socket() as probe:  # the port is free for the next start
        probe.bind(("127.0.0.1", port))
