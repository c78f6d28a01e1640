"""The system's status as typed records, read from a real home: registry, deployment audit log,
prediction log and Dagster instance. `ct status` (its own tests) prints what these collect."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.app.system_status import RolloutStep, SlotStatus, collect, rollout_steps, rows_served
from ct_assets.lib.core import settings
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets_tests.conftest import trained_model
from ct_assets_tests.lib.serving.conftest import logged_batch


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_spec) -> Registry:
    """The flights pipeline's registry in a new home (CT_HOME)."""
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    config = settings.config()
    return Registry(config.registry, flights_spec.name, config.audit_home)


def test_a_home_with_a_champion_a_refused_candidate_and_a_rollout(registry: Registry, flights_spec) -> None:
    config = settings.config()
    first = registry.register(trained_model(pipeline=flights_spec.name, model_sha256="a"))
    registry.update(first, verdict={"passed": True, "reasons": []})
    registry.promote(first, who="test", why="first model")
    second = registry.register(trained_model(pipeline=flights_spec.name, model_sha256="b"))
    registry.update(second, verdict={"passed": False, "reasons": ["AUC 0.61 < champion's 0.66 - 0.005"]})
    deploy = deploy_steps.deployment(flights_spec, config)
    bento = f"flights_delay_service:{first}-a"
    deploy.audit("rollout_started", "test", f"deploy {bento}", slot="blue", active=None)
    deploy.audit("switch", "test", "first deployment", slot="blue", bento=bento)
    deploy.audit("retention", "test", "not a rollout step")

    status = collect(flights_spec)

    assert status.champion == first and status.rows_served == 0
    assert status.last_gate is not None and status.last_gate.version == second
    assert not status.last_gate.passed and status.last_gate.reasons == ["AUC 0.61 < champion's 0.66 - 0.005"]
    assert status.last_retrain is None, "no retrain run in this home's Dagster instance"
    rollout = status.last_rollout
    assert rollout is not None and (rollout.action, rollout.slot, rollout.version) == (
        "switch",
        "blue",
        f"{first}-a",
    )
    assert [s.action for s in rollout_steps(deploy)] == ["rollout_started", "switch"]
    assert not any(status.health.model_dump().values()), "nothing runs in this home"
    assert status.last_gate.refit is None
    assert set(status.serving) == {"blue", "green"} and not any(s.serving for s in status.serving.values())
    dumped = status.model_dump(mode="json")
    assert dumped["last_gate"]["passed"] is False and dumped["last_rollout"]["why"] == "first deployment"
    assert {"serving", "champion", "rows_served", "last_gate", "last_retrain", "last_rollout"} <= set(dumped)


def test_a_slot_serves_when_up_with_a_bento_and_either_active_or_given_a_share() -> None:
    def slot(**fields: object) -> SlotStatus:
        return SlotStatus(**{"bento": "s:v1", "share": 0.0, "up": True, "active": False} | fields)

    assert slot(active=True).serving and slot(share=0.1).serving
    assert not slot().serving, "an idle standby"
    assert not slot(active=True, up=False).serving and not slot(active=True, bento=None).serving


def test_a_rollout_step_keeps_what_the_terminal_shows_and_drops_other_details() -> None:
    step = RolloutStep.from_audit(
        {
            "at": "2026-12-06T10:00:00+00:00",
            "action": "rollback",
            "who": "ct",
            "why": "p99 over 250 ms",
            "slot": "green",
            "bento": "svc:v0003-abc",
            "requests_cut": 2,
        }
    )
    assert step.version == "v0003-abc" and step.why == "p99 over 250 ms"
    assert RolloutStep.from_audit({"at": "t", "action": "approved"}).version is None


def test_rows_served_counts_a_log_file_again_once_it_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_spec
) -> None:
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    log_root = settings.config().prediction_log
    writer = PredictionLogWriter(log_root, flights_spec, "blue")
    for request in range(3):
        writer.submit(logged_batch(f"r{request}", 1.0))  # two predictions each
    writer.flush()
    assert rows_served(flights_spec) == 6
    assert rows_served(flights_spec) == 6, "an unchanged file is counted from the cache"
    writer.submit(logged_batch("r3", 1.0))
    writer.close()
    assert rows_served(flights_spec) == 8
    PredictionLogWriter(log_root, flights_spec, "green").close()  # a slot that logged nothing
    assert rows_served(flights_spec) == 8


def test_the_last_gate_names_the_judged_candidate_and_the_refit_that_serves_in_its_place(
    registry: Registry, flights_spec
) -> None:
    """A refit carries its candidate's verdict; the gate judged the candidate, not the refit."""
    candidate = registry.register(trained_model(pipeline=flights_spec.name, model_sha256="a"))
    verdict = {"passed": True, "reasons": []}
    registry.update(candidate, verdict=verdict)
    assert collect(flights_spec).last_gate.refit is None, "no refit registered yet"
    refit = registry.register(trained_model(pipeline=flights_spec.name, model_sha256="b", refit_of=candidate))
    registry.update(refit, verdict=verdict)

    gate = collect(flights_spec).last_gate

    assert gate is not None and (gate.version, gate.refit, gate.passed) == (candidate, refit, True)
