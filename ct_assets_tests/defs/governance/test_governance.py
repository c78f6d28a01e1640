"""Governance wiring on a real home folder and a real Dagster instance: the audit-chain check on the
deployment passes, then fails naming the tampered raw file; the retention job keeps what the champion
needs and records itself; the audit sensor shows each entry once on its asset; and a planted operator
token or webhook URL appears in no audit entry, run log or stored event."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest
import uvicorn

from ct_assets.defs.governance.factory import audit_log_sensor, build_governance_defs
from ct_assets.defs.resources import HomeFolder, LandingZone, ModelRegistry, PredictionLog, Warehouse
from ct_assets.lib.core import settings
from ct_assets.lib.core.audit import home_log
from ct_assets.lib.serving.operator_api import create_app
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment
from ct_assets_tests.conftest import FIRST_DAYS
from ct_assets_tests.lib.governance.test_lineage import build_home

pytestmark = pytest.mark.slow
TOKEN = "planted-operator-token-5c4b3a2910"
WEBHOOK = "https://hooks.example.com/services/planted-webhook-7f6e5d"
NAME = "governance_flights"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, flights_landing: Path) -> dict:
    root = tmp_path_factory.mktemp("gov_defs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CT_HOME", str(root))
        built = build_home(root, flights_landing, NAME)
    old = datetime.now(UTC).date() - timedelta(days=400)
    (root / "prediction_log" / NAME / old.isoformat()).mkdir(parents=True)
    (root / "prediction_log" / NAME / old.isoformat() / "blue-1.jsonl").write_text('{"request_id": "old"}\n')
    return built


def _serve(app: object) -> tuple[str, uvicorn.Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def test_governance_end_to_end(home: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spec = home["root"], home["spec"]
    monkeypatch.setenv("CT_HOME", str(root))
    monkeypatch.setenv("CT_OPERATOR_TOKEN", TOKEN)
    monkeypatch.setenv("CT_OPERATOR_NAME", "oncall-bot")
    monkeypatch.setenv("CT_ALERT_WEBHOOK", WEBHOOK)
    # retention: the first two days are past retention (1 day), but the champion was trained on them
    spec = spec.model_copy(update={"retention": spec.retention.model_copy(update={"raw_days": 1})})
    defs = dg.Definitions.merge(
        build_governance_defs(spec),
        dg.Definitions(
            assets=[dg.AssetSpec([NAME, "deployment"]), dg.AssetSpec([NAME, "raw"])],
            sensors=[audit_log_sensor([spec])],
            resources={
                "warehouse": Warehouse(path=str(root / "warehouse.duckdb")),
                "landing": LandingZone(root=str(root / "landing")),
                "registry": ModelRegistry(root=str(root / "registry"), audit_home=str(root)),
                "prediction_log": PredictionLog(root=str(root / "prediction_log")),
                "home": HomeFolder.of(settings.config()),
            },
        ),
    )
    (root / "dagster").mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        chain_job = defs.resolve_job_def(f"{NAME}_audit_chain_job")
        result = chain_job.execute_in_process(instance=instance)
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.passed, evaluation.description
        assert evaluation.metadata["broken_links"].value == 0

        raw_file = root / "landing" / NAME / f"{FIRST_DAYS[2]}.csv"
        original = raw_file.read_bytes()
        raw_file.write_bytes(original + b"\n")
        try:
            result = chain_job.execute_in_process(instance=instance, raise_on_error=False)
            (evaluation,) = result.get_asset_check_evaluations()
            assert not evaluation.passed
            assert f"partition {FIRST_DAYS[2]} (holdout): raw file {raw_file} now hashes to" in (
                evaluation.description or ""
            )
        finally:
            raw_file.write_bytes(original)

        kept = defs.resolve_job_def(f"{NAME}_retention_job").execute_in_process(instance=instance)
        materialization = kept.asset_materializations_for_node(f"{NAME}__retention")[0]
        assert materialization.metadata["deleted_partitions"].value == []
        assert set(materialization.metadata["kept"].value) == set(FIRST_DAYS[:2])
        assert materialization.metadata["prediction_log_files_deleted"].value == 1
        assert (root / "landing" / NAME / f"{FIRST_DAYS[0]}.csv").exists()

        # a manual action through the operator API, with the token pasted into the reason by mistake
        layout = ProxyLayout(root / "deploy" / NAME / "proxy", 1, {"blue": 2, "green": 3})
        deployment = Deployment(root / "deploy" / NAME, layout, {}, "bentoml", audit_home=root)
        url, server = _serve(create_app(deployment))
        try:
            refused = httpx.post(
                f"{url}/rollback", json={"why": "x"}, headers={"Authorization": "Bearer nope"}
            )
            answer = httpx.post(
                f"{url}/rollback",
                json={"why": f"bad scores; token {TOKEN}"},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        finally:
            server.should_exit = True
        assert (refused.status_code, answer.status_code) == (401, 409)

        sensor = defs.resolve_sensor_def("audit_log_sensor")
        registry = {"registry": ModelRegistry(root=str(root / "registry"), audit_home=str(root))}
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=registry)
        )
        events = [(e.asset_key.to_user_string(), e.metadata["action"].value) for e in tick.asset_events]
        assert events == [
            (f"{NAME}/champion", "promote"),
            (f"{NAME}/raw", "retention_delete"),
            (f"{NAME}/predictions", "retention_delete"),
            (f"{NAME}/deployment", "operator_request"),  # the refused request leaves no entry
        ]
        manual = tick.asset_events[-1]
        assert manual.metadata["who"].value == "oncall-bot" and "[redacted]" in manual.metadata["why"].value
        again = sensor.evaluate_tick(
            dg.build_sensor_context(
                instance=instance, cursor=tick.cursor, definitions=defs, resources=registry
            )
        )
        assert not again.asset_events and again.skip_message.startswith("no new entries")
        for event in tick.asset_events:  # what the daemon does with a sensor's asset events
            instance.report_runless_asset_event(event)
        stored = instance.fetch_observations(dg.AssetKey([NAME, "deployment"]), limit=10).records
        assert len(stored) == 1

        assert home_log(root).verify().ok
        leaked = [
            str(path)
            for path in root.rglob("*")
            if path.is_file()
            and (TOKEN.encode() in path.read_bytes() or WEBHOOK.encode() in path.read_bytes())
        ]
        assert leaked == [], "a secret was written to " + ", ".join(leaked)
    shutil.rmtree(root / "dagster", ignore_errors=True)
