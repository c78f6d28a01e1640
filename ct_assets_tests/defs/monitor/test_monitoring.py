"""The monitoring loop on real flights and a real Dagster instance: profiles, live performance and
drift per partition; the drift sensor stays quiet on ordinary days, requests a retrain (with its
reason in the tags) after injected drift, and then cools down; the landing sensor ingests new and
changed files; alerts reach a webhook."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ct_assets.defs.data.factory import build_data_defs
from ct_assets.defs.deploy.factory import build_deploy_defs
from ct_assets.defs.model.factory import build_model_defs
from ct_assets.defs.monitor.factory import build_monitor_defs
from ct_assets.defs.monitor.sensors import LOST_RUN_RETRIES
from ct_assets.defs.resources import (
    HomeFolder,
    JsonlAlertSink,
    LandingZone,
    ModelRegistry,
    PredictionLog,
    ProfileStore,
    SnapshotFolder,
    Warehouse,
    WebhookAlertSink,
)
from ct_assets.lib.core import alerts, names
from ct_assets.lib.core.dates import day_keys
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.data import demo_source, landing_state
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.conftest import write_flights_variant

pytestmark = pytest.mark.slow
TRAIN_DAYS = day_keys("2013-01-01", "2013-01-14")
ORDINARY = day_keys("2013-01-15", "2013-01-17")
# Three drifted days: the AUC test holds the whole window to the model's own day-to-day range
DRIFTED = day_keys("2013-01-18", "2013-01-20")
SETTINGS = {
    "gate.min_auc": 0.55,
    "training.min_rows": 1000,
    "training.window_partitions": 14,
}


def _drifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same day's flights, moved: other carriers, one origin, later hours, longer trips, tail
    numbers the plane registry does not know, and arrival delays that no longer follow the schedule."""
    rng = np.random.default_rng(seed)
    carriers = sorted(frame["carrier"].unique())
    shifted = frame.assign(
        carrier=frame["carrier"].map(dict(zip(carriers, carriers[1:] + carriers[:1], strict=True))),
        origin="EWR",
        distance=(frame["distance"] * 2).clip(upper=6000),
        hour=(frame["hour"] + 7) % 24,
        tailnum="N" + frame["flight"].astype(str) + "ZZ",
        arr_delay=rng.permutation(frame["arr_delay"].to_numpy()),
    )
    shifted["sched_dep_time"] = shifted["hour"] * 100 + shifted["minute"]
    return shifted


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("monitor")
    spec = load_spec(write_flights_variant(root / "pipelines" / "flights_delay", SETTINGS))
    landing = root / "landing"
    demo_source.land_context(landing, spec.name, list(spec.context_tables))
    for day in [*TRAIN_DAYS, *ORDINARY]:
        demo_source.land_day(landing, spec.name, day)
    for index, day in enumerate(DRIFTED):
        path = demo_source.land_day(landing, spec.name, day)
        _drifted(pd.read_csv(path), index).to_csv(path, index=False)
    resources = {
        "warehouse": Warehouse(path=str(root / "w.duckdb")),
        "landing": LandingZone(root=str(landing)),
        "registry": ModelRegistry(root=str(root / "registry")),
        "profiles": ProfileStore(root=str(root / "p")),
        "alerts": JsonlAlertSink(path=str(root / "alerts.jsonl")),
        "snapshots": SnapshotFolder(root=str(root / "online")),
        "prediction_log": PredictionLog(root=str(root / "log")),
        "home": HomeFolder.of(Config.under(root)),
    }
    defs = dg.Definitions.merge(
        build_data_defs(spec),
        build_model_defs(spec),
        build_monitor_defs(spec),
        build_deploy_defs(spec),
        dg.Definitions(resources=resources),
    )
    instance = dg.DagsterInstance.ephemeral()
    data_assets = [a for a in build_data_defs(spec).assets if isinstance(a, dg.AssetsDefinition)]
    dg.materialize(
        [a for a in data_assets if a.partitions_def is None], resources=resources, instance=instance
    )

    def ingest(days: list[str]) -> None:
        job = defs.resolve_job_def(names.job_name(spec.name, "ingest"))
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            },
        )
        assert result.success

    ingest(TRAIN_DAYS)
    trained = defs.resolve_job_def(names.job_name(spec.name, "retrain")).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=names.training_run_config(spec.name, TRAIN_DAYS[-1]),
    )
    assert trained.success
    built = {"spec": spec, "defs": defs, "instance": instance, "resources": resources, "root": root}
    ingest(ORDINARY)
    # the drift sensor's view between the ordinary and the drifted days, kept for the drift test
    built["quiet"] = _tick(built, names.sensor_name(spec.name, "drift"))
    # The dashboard as the loop keeps it: the drifted days' ingest makes it due, it is drawn, and
    # then nothing is due. Done here, so that every test only reads the loop.
    dashboard = [a for a in build_monitor_defs(spec).assets if a.key.path[-1] == "monitoring_dashboard"]
    selection = dg.AssetSelection.assets(*(a.key for a in dashboard))
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection)
    ingest(DRIFTED)
    due = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=before.cursor
    )
    built["dashboard"] = dg.materialize(dashboard, resources=resources, instance=instance)
    after = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=due.cursor
    )
    built["dashboard_requests"] = (due.total_requested, after.total_requested)
    return built


def _tick(loop: dict, name: str, cursor: str | None = None) -> dg.SensorResult:
    sensor = loop["defs"].resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=loop["instance"],
        cursor=cursor,
        resources=loop["resources"],
        repository_def=loop["defs"].get_repository_def(),
    )
    return sensor.evaluate_tick(context)


def test_drift_sensor_quiet_on_ordinary_days_then_retrains_on_injected_drift(loop: dict) -> None:
    spec = loop["spec"]
    quiet = loop["quiet"]
    assert not quiet.run_requests
    assert quiet.skip_message.startswith("2013-01-17: drift in")

    fired = _tick(loop, f"{spec.name}_drift_sensor")
    assert len(fired.run_requests) == 1, fired.skip_message
    request = fired.run_requests[0]
    assert loop["defs"].resolve_sensor_def(f"{spec.name}_drift_sensor").job_name == f"{spec.name}_retrain"
    assert request.tags["ct/trigger"] == "drift" and request.tags["ct/partition"] == "2013-01-20"
    reason = request.tags["ct/reason"]
    assert "drift in 3 of the last 3 partitions (needs 2)" in reason and "it costs accuracy" in reason
    assert request.run_config["ops"][f"{spec.name}__training_set"]["config"]["as_of"] == "2013-01-20"

    again = _tick(loop, f"{spec.name}_drift_sensor", cursor=fired.cursor)
    assert not again.run_requests and "cooling down (0 of 7 partitions" in again.skip_message

    logged = alerts.read_jsonl(Path(loop["resources"]["alerts"].path))
    drifted = [a for a in logged if a.tier == "warning" and a.partition in DRIFTED]
    assert drifted and drifted[0].owner == spec.monitoring.owners["warning"]
    assert any(a.tier == "info" and "retrain requested by the drift sensor" in a.cause for a in logged)

    with loop["resources"]["warehouse"].connect() as con:
        summary = dict(
            con.execute(f"SELECT _partition_key, drift_share FROM {spec.name}.drift_summary").fetchall()
        )
        live = con.execute(
            f"SELECT count(*) FROM {spec.name}.live_performance WHERE segment = 'overall'"
        ).fetchone()
    assert max(summary[d] for d in ORDINARY) < spec.monitoring.drift_share <= min(summary[d] for d in DRIFTED)
    assert live[0] >= len(ORDINARY + DRIFTED)
    with loop["resources"]["warehouse"].connect() as con:
        shifts = dict(
            con.execute(
                f"SELECT _partition_key, prediction_hellinger FROM {spec.name}.drift_summary"
            ).fetchall()
        )
    assert all(0 <= shifts[d] <= 1 for d in ORDINARY + DRIFTED)


def test_performance_sensor_retrains_on_days_whose_labels_no_longer_follow_and_says_why(loop: dict) -> None:
    result = _tick(loop, f"{loop['spec'].name}_performance_sensor")
    assert len(result.run_requests) == 1, result.skip_message  # the drifted days' delays are shuffled
    reason = result.run_requests[0].tags["ct/reason"]
    assert reason.startswith("significant AUC drop: AUC ") and "on 2013-01-18..2013-01-20" in reason
    assert " vs holdout " in reason and "z " in reason


def _days(request: dg.RunRequest) -> list[str]:
    """The partitions one ingest request covers (one partition, or a range of landed days)."""
    if request.partition_key:
        return [request.partition_key]
    start = request.tags.get("dagster/asset_partition_range_start")
    return day_keys(start, request.tags["dagster/asset_partition_range_end"]) if start else []


def _own_landing(loop: dict, tmp_path: Path) -> dict:
    """The loop with a copy of its landing folder, for a test that changes landed files."""
    root = tmp_path / "landing"
    shutil.copytree(loop["resources"]["landing"].root, root)
    return {**loop, "resources": {**loop["resources"], "landing": LandingZone(root=str(root))}}


def test_landing_sensor_ingests_changed_files_not_the_ones_already_ingested(
    loop: dict, tmp_path: Path
) -> None:
    """Every landed day was ingested (by the fixture's own run) from the very files landed: the
    sensor's first look only remembers them; a changed file is ingested again."""
    spec = loop["spec"]
    loop = _own_landing(loop, tmp_path)
    first = _tick(loop, f"{spec.name}_landing_sensor")
    assert [r.job_name for r in first.run_requests] == [f"{spec.name}_context"]
    assert all(r.tags["ct/trigger"] == "landing" for r in first.run_requests)
    assert set(landing_state.parse(first.cursor)["seen"]) == {*TRAIN_DAYS, *ORDINARY, *DRIFTED}
    assert not _tick(loop, f"{spec.name}_landing_sensor", cursor=first.cursor).run_requests
    path = Path(loop["resources"]["landing"].root) / spec.name / f"{ORDINARY[0]}.csv"
    frame = pd.read_csv(path)
    frame.head(100).to_csv(path, index=False)
    changed = _tick(loop, f"{spec.name}_landing_sensor", cursor=first.cursor)
    assert [_days(r) for r in changed.run_requests] == [[ORDINARY[0]]]
    again = _tick(loop, f"{spec.name}_landing_sensor")
    assert [_days(r) for r in again.run_requests if _days(r)] == [[ORDINARY[0]]], "a first look too"


def test_landing_sensor_asks_again_for_a_lost_ingest_then_gives_up(loop: dict, tmp_path: Path) -> None:
    """A landed day whose ingest run never materialized it (killed, lost) is requested again, with a
    new run key, at most LOST_RUN_RETRIES times; ingested days are never requested twice."""
    spec = loop["spec"]
    loop = _own_landing(loop, tmp_path)
    late = "2013-01-21"  # the day after the last ingested one
    demo_source.land_day(Path(loop["resources"]["landing"].root), spec.name, late)
    cursor = None
    keys = []
    for _ in range(LOST_RUN_RETRIES + 2):
        result = _tick(loop, f"{spec.name}_landing_sensor", cursor=cursor)
        keys.append([r.run_key for r in result.run_requests if late in _days(r)])
        assert all(_days(r) == [late] for r in result.run_requests if cursor)
        cursor = result.cursor or cursor
    assert [len(k) for k in keys] == [1, 1, 1, 0]
    assert keys[1][0].endswith(":retry1") and keys[2][0].endswith(":retry2")


def test_performance_sensor_requests_the_first_model_when_there_is_none(loop: dict, tmp_path: Path) -> None:
    spec = loop["spec"]
    empty = {**loop["resources"], "registry": ModelRegistry(root=str(tmp_path / "no_models"))}
    context = dg.build_sensor_context(
        instance=loop["instance"], resources=empty, repository_def=loop["defs"].get_repository_def()
    )
    result = loop["defs"].resolve_sensor_def(f"{spec.name}_performance_sensor").evaluate_tick(context)
    assert len(result.run_requests) == 1, result.skip_message
    request = result.run_requests[0]
    assert request.tags["ct/trigger"] == "first_model"
    assert "no champion yet" in request.tags["ct/reason"]
    latest = request.tags["ct/partition"]
    assert request.run_config["ops"][f"{spec.name}__training_set"]["config"]["as_of"] == latest
    drift = loop["defs"].resolve_sensor_def(f"{spec.name}_drift_sensor").evaluate_tick(context)
    assert not drift.run_requests


def test_dashboard_and_registry_importance(loop: dict) -> None:
    spec = loop["spec"]
    result = loop["dashboard"]
    metadata = result.asset_materializations_for_node(f"{spec.name}__monitoring_dashboard")[0].metadata
    assert "data:image/png;base64," in metadata["segments"].value
    assert "data:image/png;base64," in metadata["drift"].value
    importance = Registry(Path(loop["resources"]["registry"].root), spec.name).champion().feature_importance
    assert abs(sum(importance.values()) - 1) < 1e-9


def test_drift_and_live_metadata_are_tables_and_an_ingest_refreshes_the_dashboard(loop: dict) -> None:
    spec = loop["spec"]
    instance = loop["instance"]
    drift = instance.get_latest_materialization_event(dg.AssetKey([spec.name, "drift"]))
    table = drift.asset_materialization.metadata["drift"].value
    assert table.startswith("| partition | against | importance share drifted | drifted features")
    assert DRIFTED[-1] in table and "{" not in table
    live = instance.get_latest_materialization_event(dg.AssetKey([spec.name, "live_performance"]))
    assert live.asset_materialization.metadata["live"].value.startswith("| partition | model | AUC")
    due, after = loop["dashboard_requests"]
    assert due == 1, "the drifted days' drift materialized: refresh the dashboard"
    assert after == 0, "nothing new since the dashboard was drawn"


def test_webhook_alert_sink_posts_json(tmp_path: Path) -> None:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sink = WebhookAlertSink(
            url=f"http://127.0.0.1:{server.server_port}/hook", path=str(tmp_path / "a.jsonl")
        )
        sink.send(
            alerts.Alert(
                "critical",
                "flights_delay",
                "2013-02-01",
                "live AUC 0.55 < floor 0.60",
                "look at the retrain run",
                "ml-oncall@example.com",
            )
        )
    finally:
        server.shutdown()
    assert received[0]["tier"] == "critical" and received[0]["owner"] == "ml-oncall@example.com"
    assert alerts.read_jsonl(tmp_path / "a.jsonl")[0].cause == "live AUC 0.55 < floor 0.60"
