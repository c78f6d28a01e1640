"""`ct deploy start --pipeline P` deploys the champion of a home that has only features and a
champion (it publishes the online snapshot, builds the bento and the compatibility set itself):
from nothing running, onto a running deployment (canary on live traffic, then switch), and again
after `ct deploy stop`; a start while the champion already serves all traffic does nothing and
says so; a rollout that rolls back (a canary that gets no traffic) exits 1 with its
reason, and the Dagster deployment asset fails its run in the same case; the rollout's compatibility
check is not logged as served traffic. Real slots, real HAProxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import demo_source
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor.backtest import build_features
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets_tests.bentos.test_service import DAYS
from ct_assets_tests.conftest import free_ports, requires_haproxy, trained_model, write_flights_variant
from ct_assets_tests.lib.serving.test_predictor import request_rows

pytestmark = [pytest.mark.slow, requires_haproxy]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory):
    """A home with the flights pipeline's features and a champion, nothing deployed."""
    root = tmp_path_factory.mktemp("deploy_start")
    proxy_port, blue, green = free_ports(3)
    spec = load_spec(
        write_flights_variant(
            root / "pipelines" / "flights_delay",
            {
                "training.min_rows": 500,
                "training.window_partitions": 8,
                "serving.proxy_port": proxy_port,
                "serving.blue_port": blue,
                "serving.green_port": green,
                "serving.health_window_seconds": 4,
                "serving.max_health_window_seconds": 8,  # the idle canaries below wait this long
                "serving.min_canary_requests": 3,
                "serving.max_p99_ms": 5000,
            },
        )
    )
    config = settings.Config.under(root / "home", pipeline_dirs=(root / "pipelines",))
    demo_source.land_context(config.landing, spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(config.landing, spec.name, day)
    config.warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = open_connection(config.warehouse)
    build_features(con, spec, config.landing, DAYS)
    registry = Registry(config.registry, spec.name, config.audit_home)
    candidate = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(candidate.version, verdict={"passed": True, "reasons": [], "notes": ["test"]})
    registry.promote(candidate.version, who="test", why="deploy it")
    rows = request_rows(con, spec, DAYS[-1], 5)
    con.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_", "BENTOML_"))}
    env.update(
        CT_HOME=str(config.home),
        CT_PIPELINES_DIR=str(root / "pipelines"),
        CT_BUILTIN_PIPELINES="0",
        CT_SERVICE_WORKERS="1",
    )
    yield {"spec": spec, "config": config, "env": env, "rows": rows, "registry": registry}
    _ct(env, "deploy", "stop", "--pipeline", spec.name)


def _ct(env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    ct = str(Path(sys.executable).parent / "ct")
    return subprocess.run(
        [ct, *args], env=env, cwd=settings.REPO_ROOT, capture_output=True, text=True, timeout=600
    )


def _start(home: dict) -> subprocess.CompletedProcess[str]:
    return _ct(home["env"], "deploy", "start", "--pipeline", home["spec"].name, "--who", "test")


def _promote_another(home: dict) -> str:
    """A new champion version of the same trained model (its own bento), as a retrain would give."""
    registry: Registry = home["registry"]
    champion = registry.champion()
    version = registry.register(
        trained_model(
            pipeline=champion.pipeline,
            model_sha256=champion.model_sha256,
            layout=champion.layout,
            partitions=champion.partitions,
        )
    )
    registry.update(version, verdict={"passed": True, "reasons": [], "notes": ["test"]})
    registry.promote(version, who="test", why="a new champion to deploy")
    return version


def _rows_served(home: dict, at_least: int) -> int:
    """`ct status`'s rows served, once the slot's log writer has written `at_least` (and 1 s more
    for anything written after them)."""

    def served() -> int:
        status = _ct(home["env"], "status", "--pipeline", home["spec"].name, "--json")
        return json.loads(status.stdout)["rows_served"]

    deadline = time.monotonic() + 30
    while served() < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1)
    return served()


def _traffic(home: dict, stop: threading.Event, statuses: list[int]) -> None:
    url = f"http://127.0.0.1:{home['spec'].serving.proxy_port}"
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                statuses.append(client.post("/predict", json={"rows": home["rows"][:1]}).status_code)
            except httpx.TransportError:
                statuses.append(0)
            stop.wait(0.1)


def test_start_deploys_from_nothing_onto_a_running_deployment_and_after_stop(home: dict) -> None:
    spec = home["spec"]
    first = _start(home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "online snapshot published" in first.stdout and "deployed:" in first.stdout
    url = f"http://127.0.0.1:{spec.serving.proxy_port}"
    assert httpx.post(f"{url}/predict", json={"rows": home["rows"]}, timeout=30).status_code == 200
    # the rollout's compatibility check scored the holdout on the new slot, but only the caller's
    # rows are served traffic in the prediction log
    assert _rows_served(home, len(home["rows"])) == len(home["rows"])
    deploy = deploy_steps.deployment(spec, home["config"])
    active = deploy.state().active

    # the champion already serves all traffic: nothing to build or start, and that is no failure
    same = _start(home)
    assert same.returncode == 0 and "already serving:" in same.stdout, same.stdout + same.stderr
    assert deploy.state().active == active and "rolling out" not in same.stdout

    _promote_another(home)
    stop, statuses = threading.Event(), []
    sender = threading.Thread(target=_traffic, args=(home, stop, statuses))
    sender.start()
    try:
        second = _start(home)
    finally:
        stop.set()
        sender.join()
    assert second.returncode == 0, second.stdout + second.stderr
    assert deploy.state().active != active and statuses and set(statuses) == {200}

    # a canary that gets no traffic cannot be judged: rolled back, and the command fails
    switched = deploy.state().active
    _promote_another(home)
    idle = _start(home)
    assert idle.returncode == 1 and "rolled back" in idle.stderr and "Traceback" not in idle.stderr
    assert deploy.state().active == switched

    assert _ct(home["env"], "deploy", "stop", "--pipeline", spec.name).returncode == 0
    again = _start(home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert httpx.post(f"{url}/predict", json={"rows": home["rows"]}, timeout=30).status_code == 200


def test_the_deployment_asset_fails_its_run_when_the_rollout_rolls_back(home: dict) -> None:
    from ct_assets.defs.deploy.factory import build_deploy_defs
    from ct_assets.defs.resources import HomeFolder, JsonlAlertSink, ModelRegistry

    spec, config = home["spec"], home["config"]
    deploy = deploy_steps.deployment(spec, config)
    if not deploy.slots.running(deploy.state().active or "blue"):
        assert _start(home).returncode == 0
    # This process's BentoML store is the test session's (`ct` above built into the home's): the
    # champion's bento goes there too, so the asset's rollout finds it and starts its canary.
    registry = Registry(config.registry, spec.name, config.audit_home)
    record = registry.champion()
    bento_build.build(spec, record, registry.models / f"{record.model_sha256}.cbm")
    defs = build_deploy_defs(spec)
    deployment = next(a for a in defs.assets if "deployment" in a.key.path[-1])
    result = dg.materialize(
        [deployment],
        resources={
            "registry": ModelRegistry(root=str(config.registry), audit_home=str(config.audit_home)),
            "alerts": JsonlAlertSink(path=str(config.alerts_file)),
            "home": HomeFolder.of(config),
        },
        raise_on_error=False,
    )
    assert not result.success  # no traffic reached the canary: rolled back, and the run says so
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "rolled back" in str(failure.event_specific_data.error)
    assert "did not start" not in str(failure.event_specific_data.error)
    assert "rolled back" in config.alerts_file.read_text()
