"""`ct status`: one summary of a pipeline, on a real home. A fresh home has every key and nothing
to report; a prediction log written by serving's own writer is counted as rows served; the text
view shows each slot's share (or that the deployment is stopped), the gate's reasons and what
became of its refit, the last retrain by what launched it, and the last rollout; the pipeline is
checked before anything is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ct_assets.app.cli.status import render
from ct_assets.app.system_status import (
    GateSummary,
    Health,
    RetrainSummary,
    RolloutStep,
    SlotStatus,
    SystemStatus,
)
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error
from ct_assets_tests.app.cli.test_errors import ct
from ct_assets_tests.lib.serving.conftest import logged_batch

KEYS = {"serving", "champion", "rows_served", "last_gate", "last_retrain", "last_rollout"}


# a `ct status` that reads the last retrain run opens the home's Dagster instance: over 10 s here
@pytest.mark.slow
def test_status_of_a_fresh_home(tmp_path: Path) -> None:
    done = ct(tmp_path, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status) >= KEYS
    assert status["champion"] is None and status["rows_served"] == 0 and status["last_gate"] is None
    assert set(status["serving"]) == {"blue", "green"}
    assert all(s["bento"] is None and s["share"] == 0.0 and not s["up"] for s in status["serving"].values())
    assert not any(status["health"].values()) and {"daemon", "webserver"} <= set(status["health"])
    text = ct(tmp_path, "status")
    assert (
        text.returncode == 0 and "champion      none yet" in text.stdout and "rows served   0" in text.stdout
    )


@pytest.mark.slow
def test_status_counts_the_rows_served(tmp_path: Path, flights_spec) -> None:
    writer = PredictionLogWriter(
        tmp_path / "prediction_log", load_spec(flights_spec.spec_dir / "spec.yaml"), "blue"
    )
    for request in range(7):
        writer.submit(logged_batch(f"r{request}", 1.0))  # two predictions each
    writer.close()
    status = json.loads(ct(tmp_path, "status", "--json").stdout)
    assert status["rows_served"] == 14


def test_the_summary_of_a_canary_after_a_refused_candidate() -> None:
    status = SystemStatus(
        pipeline="flights_delay",
        serving={
            "blue": SlotStatus(bento="flights_delay_service:v0001-abc", share=0.9, up=True, active=True),
            "green": SlotStatus(bento="flights_delay_service:v0003-def", share=0.1, up=True, active=False),
        },
        champion="v0003",
        rows_served=12345,
        last_gate=GateSummary(
            version="v0002", passed=False, reasons=["AUC 0.61 < 0.66", "log-loss rose"], auc=0.61
        ),
        last_retrain=RetrainSummary(
            run_id="r1",
            status="SUCCESS",
            trigger="drift",
            partition="2013-02-14",
            reason="PSI 0.31 on dep_hour",
        ),
        last_rollout=RolloutStep(
            at="2013-02-14T10:00:00.123456+00:00",
            action="canary_started",
            bento="flights_delay_service:v0003-def",
            why="10% for 60 s",
        ),
        health=Health(proxy=True, proxy_supervised=True, daemon=False, webserver=True),
        proxy_restarts=0,
    )
    assert render(status).splitlines() == [
        "pipeline      flights_delay",
        "slot blue     v0001-abc (flights_delay_service:v0001-abc), 90% of traffic, up, active",
        "slot green    v0003-def (flights_delay_service:v0003-def), 10% of traffic, up",
        "champion      v0003",
        "rows served   12,345",
        "last gate     v0002 FAILED: AUC 0.61 < 0.66; log-loss rose",
        "last retrain  SUCCESS, drift on 2013-02-14: PSI 0.31 on dep_hour",
        "last rollout  2013-02-14T10:00:00 canary_started flights_delay_service:v0003-def: 10% for 60 s",
        "health        proxy up, proxy_supervised up, daemon down, webserver up",
    ]


def _idle_home(**fields: object) -> SystemStatus:
    """The status of a home where nothing runs and nothing was judged, with `fields` changed."""
    idle = SlotStatus(bento=None, share=0.0, up=False, active=False)
    nothing = {
        "pipeline": "flights_delay",
        "serving": {"blue": idle, "green": idle},
        "champion": None,
        "rows_served": 0,
        "last_gate": None,
        "last_retrain": None,
        "last_rollout": None,
        "health": Health(proxy=False, proxy_supervised=False, daemon=False, webserver=False),
        "proxy_restarts": 0,
    }
    return SystemStatus(**{**nothing, **fields})


def test_the_summary_says_what_became_of_a_passed_candidate_s_refit() -> None:
    """The gate line claims the refit serves only when it does; otherwise it says so, and what
    serves (after a rollback, the version the slot line shows)."""

    def gate_line(**fields: object) -> str:
        gate = GateSummary(version="v0031", passed=True, reasons=[], auc=0.7, refit="v0032", **fields)
        lines = render(_idle_home(champion="v0032", last_gate=gate)).splitlines()
        return next(line for line in lines if line.startswith("last gate"))

    assert gate_line(serving=["v0032"]) == "last gate     v0031 PASSED; serves as its refit v0032"
    assert gate_line(serving=["v0030"], refit_rolled_back=True) == (
        "last gate     v0031 PASSED; refit v0032, rolled back; v0030 serves"
    )
    assert (
        gate_line(serving=["v0030"]) == "last gate     v0031 PASSED; refit v0032, not serving; v0030 serves"
    )
    assert gate_line(serving=[]) == "last gate     v0031 PASSED; refit v0032, not serving; nothing serves"


def test_the_summary_of_the_last_retrain_by_what_launched_it() -> None:
    def retrain_line(**fields: object) -> str:
        run = {"run_id": "r", "status": "SUCCESS", "trigger": "manual", "partition": None, "reason": ""}
        lines = render(_idle_home(last_retrain=RetrainSummary(**{**run, **fields}))).splitlines()
        return next(line for line in lines if line.startswith("last retrain"))

    assert retrain_line() == "last retrain  SUCCESS, manual run"
    assert retrain_line(partition="2017-05-07") == "last retrain  SUCCESS, manual run as of 2017-05-07"
    assert retrain_line(trigger="drift", partition="2017-05-07", reason="PSI 0.3") == (
        "last retrain  SUCCESS, drift on 2017-05-07: PSI 0.3"
    )
    assert retrain_line(trigger="schedule") == "last retrain  SUCCESS, schedule: no reason recorded"


def test_the_summary_of_a_home_with_nothing_yet() -> None:
    lines = render(_idle_home()).splitlines()
    assert lines[1:3] == [
        "slot blue     nothing, 0% of traffic, down",
        "slot green    nothing, 0% of traffic, down",
    ]
    assert lines[3:8] == [
        "champion      none yet",
        "rows served   0",
        "last gate     none yet",
        "last retrain  none yet",
        "last rollout  none yet",
    ]


def test_status_of_an_unknown_pipeline(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("status", "--pipeline", "no_such_pipeline", "--json")
    assert one_line_error(ran).startswith("ct: no pipeline 'no_such_pipeline' in ")
    assert ran.out == "" and not (home / "deploy").exists()
