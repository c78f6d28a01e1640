"""The live loop as a user runs it: `ct demo` starts Dagster (webserver, daemon, code server), the
sensors ingest what the replay lands, Ctrl-C stops every process cleanly, and running it again
resumes where it stopped, landing and ingesting every day exactly once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from rich.console import Console

from ct_assets.app.live import (
    EventLog,
    LiveOptions,
    LoopStatus,
    champion_not_serving,
    render,
    suspend_serving,
)
from ct_assets.app.system_status import (
    GateSummary,
    Health,
    RetrainSummary,
    RolloutStep,
    SlotStatus,
    SystemStatus,
)
from ct_assets.lib.core import settings
from ct_assets.lib.data import demo_source
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.deployment_state import DeployState, SlotProcess
from ct_assets_tests.conftest import free_ports, trained_model, write_flights_variant
from ct_assets_tests.lib.serving.lock_holder import hold_the_lock

BIN = Path(sys.executable).parent


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in command or text in environ:
            found.append(f"{entry.name}: {command[:200]}")
    return found


def _ingested(home: Path) -> set[str]:
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        return instance.get_materialized_partitions(dg.AssetKey(["flights_delay", "raw"]))
    finally:
        instance.dispose()


def _wait(predicate, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"ct demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # two sessions, each paced by sensor ticks and quiet spells; slower under load
def test_live_loop_stops_cleanly_and_resumes_without_losing_or_repeating_a_day(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ui, proxy_port, blue, green = free_ports(4)
    pipelines = tmp_path / "pipelines"
    write_flights_variant(
        pipelines / "flights_delay",
        {"serving.proxy_port": proxy_port, "serving.blue_port": blue, "serving.green_port": green},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env |= {"CT_HOME": str(home), "CT_PIPELINES_DIR": str(pipelines), "CT_BUILTIN_PIPELINES": "0"}
    command = [str(BIN / "ct"), "demo", "--history-days", "0", "--seconds-per-day", "2", "--port", str(ui)]
    progress_file = home / "live" / "replay.json"

    def progress() -> dict:
        return json.loads(progress_file.read_text()) if progress_file.exists() else {"days_landed": []}

    # first session: two days, then Ctrl-C (SIGINT to the terminal's process group)
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            [*command, "--days", "2"],
            env=env,
            cwd=settings.REPO_ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        _wait(lambda: _listening(ui), 240, "the Dagster UI", first, log)
        _wait(lambda: len(progress()["days_landed"]) == 2, 300, "two landed days", first, log)
        _wait(
            lambda: {"2013-01-01", "2013-01-02"} <= _ingested(home), 300, "sensor-driven ingest", first, log
        )
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    text = log.read_text()
    assert "stopped at 2013-01-03" in text
    assert not _listening(ui) and not _listening(proxy_port)
    assert not _processes_mentioning(str(home)), "every process of the first session is gone"

    # second session resumes at the third day and stops by itself once idle
    log = tmp_path / "second.log"
    second = subprocess.run(
        [*command, "--days", "1", "--exit-when-done"],
        env=env,
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log.write_text(second.stdout + second.stderr)
    assert second.returncode == 0, log.read_text()[-3000:]
    assert "replaying 2013-01-03 to 2013-01-03" in second.stdout
    assert progress()["days_landed"] == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert {"2013-01-01", "2013-01-02", "2013-01-03"} <= _ingested(home)
    assert not _processes_mentioning(str(home))

    expected = demo_source.flights()
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        counts = dict(
            con.execute("SELECT _partition_key, count(*) FROM flights_delay.raw GROUP BY 1").fetchall()
        )
        distinct = con.execute(
            "SELECT count(*) = count(DISTINCT flight_id) FROM flights_delay.raw"
        ).fetchone()
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        assert counts[day] == int((expected["_local_date"] == day).sum()), f"{day}: every flight once"
    assert distinct[0], "no flight ingested twice"


def test_a_champion_whose_rollout_was_cut_short_is_noticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_spec
) -> None:
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    config = settings.config()
    deploy = deploy_steps.deployment(flights_spec, config)
    registry = Registry(config.registry, flights_spec.name, config.audit_home)
    assert champion_not_serving(flights_spec, deploy, registry) is None  # nothing to serve yet
    for _ in range(2):
        version = registry.register(trained_model(model_sha256="x"))
        registry.update(version, verdict={"passed": True, "reasons": []})
        registry.promote(version, who="test", why="test")
    serving = SlotProcess(bento="flights_delay_service:v0001-x", pid=1, port=1, started_at="")
    deploy.record.save(DeployState(active="blue", slots={"blue": serving}))
    assert champion_not_serving(flights_spec, deploy, registry) == "flights_delay_service:v0002-x"
    serving = serving.model_copy(update={"bento": "flights_delay_service:v0002-x"})
    deploy.record.save(DeployState(active="blue", slots={"blue": serving}))
    assert champion_not_serving(flights_spec, deploy, registry) is None


def test_serving_is_suspended_only_once_no_deploy_run_holds_the_deployment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_spec
) -> None:
    """The demo's clean-up while a deploy run still holds the deployment: the refusal comes back as
    a reason (the clean-up goes on to stop Dagster), and once the holder is gone the stop runs."""
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    deploy = deploy_steps.deployment(flights_spec, settings.config())
    serving = SlotProcess(bento="flights_delay_service:v0001-x", pid=2**22 + 1, port=1, started_at="")
    deploy.record.save(DeployState(active="blue", slots={"blue": serving}))
    folder = tmp_path / "live"
    folder.mkdir()
    holder = hold_the_lock(deploy.folder)
    try:
        busy = suspend_serving(deploy, folder)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert busy is not None and "deployment is busy" in busy and deploy.state().active == "blue"
    assert json.loads((folder / "serving.json").read_text()) == {"slot": "blue", "bento": serving.bento}
    assert suspend_serving(deploy, folder) is None
    assert deploy.state().active is None and deploy.state().stopped_by == "ct demo"


def test_the_loop_reports_a_failed_step_once_with_its_error_but_not_a_refused_gate() -> None:
    @dg.asset
    def bundle() -> None:
        raise RuntimeError("haproxy did not start under circus: [ipc path too long]")

    @dg.asset
    def model() -> int:
        return 1

    @dg.asset_check(asset=model, blocking=True)
    def gate() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)

    console = Console(record=True, width=300)
    events = EventLog(console, time.monotonic())
    with dg.instance_for_test() as instance:
        for selection in ([bundle], [model, gate]):
            dg.materialize(selection, instance=instance, raise_on_error=False)
        events.report_failures(instance, "flights_delay")
        events.report_failures(instance, "flights_delay")
    printed = console.export_text()
    assert printed.count("run failed") == 1, printed
    assert "step bundle: " in printed
    assert "RuntimeError: haproxy did not start under circus: [ipc path too long]" in printed


def _loop_status(steps: list[RolloutStep] | None = None, **system: object) -> LoopStatus:
    serving = {
        "blue": SlotStatus(bento="svc:v0001-a", share=0.9, up=True, active=True),
        "green": SlotStatus(bento="svc:v0002-b", share=0.1, up=True, active=False),
    }
    facts = {
        "pipeline": "flights_delay",
        "serving": serving,
        "champion": "v0002",
        "rows_served": 1234,
        "last_gate": GateSummary(version="v0002", passed=True, reasons=[], auc=0.71234),
        "last_retrain": RetrainSummary(
            run_id="r1", status="SUCCESS", trigger="performance", partition="2013-02-13", reason="AUC fell"
        ),
        "last_rollout": RolloutStep(at="2026-12-06T10:00:05+00:00", action="canary", bento="svc:v0002-b"),
        "health": Health(proxy=True, proxy_supervised=True, daemon=True, webserver=True),
        "proxy_restarts": 0,
    }
    return LoopStatus(
        system=SystemStatus(**{**facts, **system}),
        day="2013-02-14",
        days_landed=3,
        waiting_for_champion=False,
        served=1234,
        rejected=0,
        unavailable=5,
        answered_by={"v0001": 1200, "v0002": 34},
        runs_in_flight=["deploy"],
        rollout_steps=steps or [],
    )


def test_the_live_view_shows_what_serves_and_the_loop_s_last_steps_rounded_for_people() -> None:
    console = Console(record=True, width=200)
    console.print(render(_loop_status(), LiveOptions(), "http://127.0.0.1:3700"))
    shown = console.export_text()
    assert "v0001-a on blue (90%), v0002-b on green (10%, canary)" in shown
    assert "v0002 passed (holdout AUC 0.712)" in shown and "0.71234" not in shown
    assert "finished - performance on 2013-02-13: AUC fell" in shown
    assert "10:00:05 canary v0002-b" in shown and "1,234 rows answered (v0001: 1,200, v0002: 34)" in shown
    assert "http://127.0.0.1:3700" in shown and "flights_delay_" not in shown


def test_the_event_log_tells_each_step_once() -> None:
    console = Console(record=True, width=200)
    events = EventLog(console, time.monotonic())
    started = RolloutStep(at="2026-12-06T10:00:00+00:00", action="rollout_started", bento="svc:v0002-b")
    status = _loop_status([started])
    for _ in range(2):
        events.update(status)
    events.update(_loop_status([started, status.system.last_rollout]))
    printed = console.export_text()
    assert printed.count("first replayed requests answered by v0001, v0002") == 1
    assert printed.count("retrain requested by the performance rule as of 2013-02-13: AUC fell") == 1
    assert printed.count("gate: v0002 passed") == 1
    assert "refit:" not in printed, "no refit of v0002 yet"
    assert printed.count("rollout: 10:00:00 rollout_started v0002-b") == 1
    assert printed.count("rollout: 10:00:05 canary v0002-b") == 1


def test_the_event_log_and_the_live_view_tell_a_passed_candidate_s_refit_apart_from_it() -> None:
    console = Console(record=True, width=300)
    events = EventLog(console, time.monotonic())
    judged = GateSummary(version="v0002", passed=True, reasons=[], auc=0.71)
    refitted = judged.model_copy(update={"refit": "v0003"})
    events.update(_loop_status(last_gate=judged))
    for _ in range(2):
        events.update(_loop_status(last_gate=refitted))
    console.print(render(_loop_status(last_gate=refitted), LiveOptions(), "u"))
    printed = console.export_text()
    assert printed.count("gate: v0002 passed") == 1 and "gate: v0003" not in printed
    assert printed.count("refit: v0003 is v0002 trained again on its whole window") == 1
    assert "v0002 passed (holdout AUC 0.710); serves as its refit v0003" in printed


def test_the_flights_demo_lands_four_weeks_of_history_and_other_specs_their_window() -> None:
    """The demo's story needs the first model trained on 2013-01-16..02-12 (the label rate it
    does not follow on the first replayed day); a spec without a demo replay lands its training
    window."""
    from ct_assets.app.cli.common import pipeline_spec
    from ct_assets.app.live import default_history_days, default_start

    flights = pipeline_spec("flights_delay")
    assert default_history_days(flights) == 28 < flights.training.window_partitions
    assert default_start(flights, 28) == "2013-02-13"
    other = flights.model_copy(update={"source": flights.source.model_copy(update={"demo_dataset": None})})
    assert default_history_days(other) == flights.training.window_partitions
    assert default_start(other, 10) == (flights.partitions.start + timedelta(days=10)).isoformat()
