"""The system's status as typed records, read from a real home: registry, deployment audit log,
prediction log and Dagster instance (the last retrain is the newest run that set out to train the
candidate, whatever launched it). `ct status` (its own tests) prints what these collect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ct_assets.app.system_status import (
    GateSummary,
    RolloutStep,
    SlotStatus,
    collect,
    last_retrain,
    rollout_steps,
    rows_served,
    with_serving,
)
from ct_assets.lib.core import names, settings
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import steps as deploy_steps
from ct_assets.lib.serving.deployment_state import DeployState
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


def _retrain_assets(pipeline: str, fail: bool = False) -> list[dg.AssetsDefinition]:
    """Stand-ins under the pipeline's real keys: a training set that takes the `as_of` config
    (`names.training_run_config`) and a candidate after it (that fails when `fail`)."""

    @dg.asset(
        key=names.asset_path(pipeline, "training_set"),
        config_schema={"as_of": dg.Field(str, is_required=False)},
    )
    def training_set() -> int:
        return 1

    @dg.asset(key=names.asset_path(pipeline, "candidate"), deps=[training_set])
    def candidate() -> int:
        if fail:
            raise ValueError("training failed")
        return 2

    return [training_set, candidate]


def test_the_last_retrain_is_the_newest_run_that_set_out_to_train_the_candidate(flights_spec) -> None:
    """Whatever launched it: `ct replay` materializes the retrain assets as Dagster's implicit asset
    job, not the retrain job; a run of other assets does not count; a failed one does."""
    pipeline = flights_spec.name

    @dg.asset(key=names.asset_path(pipeline, "raw"))
    def raw() -> int:
        return 0

    with dg.instance_for_test() as instance:
        assert last_retrain(flights_spec, instance) is None
        replayed = dg.materialize(
            _retrain_assets(pipeline),
            instance=instance,
            run_config=names.training_run_config(pipeline, "2013-01-05"),
        )
        dg.materialize([raw], instance=instance)
        assert _newest_retrain(flights_spec, instance, replayed.run_id) == (
            "SUCCESS",
            "manual",
            "2013-01-05",
            "",
        )
        tags = {"ct/trigger": "drift", "ct/partition": "2013-01-07", "ct/reason": "PSI 0.31 on dep_hour"}
        failed = dg.materialize(
            _retrain_assets(pipeline, fail=True), instance=instance, tags=tags, raise_on_error=False
        )
        newest = _newest_retrain(flights_spec, instance, failed.run_id)
        assert newest == ("FAILURE", "drift", "2013-01-07", "PSI 0.31 on dep_hour")


def _newest_retrain(spec: PipelineSpec, instance: Any, run_id: str) -> tuple[str, str, str | None, str]:
    """The newest retrain's status, trigger, partition and reason; it must be run `run_id`."""
    found = last_retrain(spec, instance)
    assert found is not None and found.run_id == run_id
    return (found.status, found.trigger, found.partition, found.reason)


def test_the_gate_knows_whether_its_refit_serves_and_whether_it_was_rolled_back() -> None:
    gate = GateSummary(version="v0031", passed=True, reasons=[], auc=0.7, refit="v0032")

    def slot(version: str, **fields: object) -> SlotStatus:
        return SlotStatus(
            **{"bento": f"svc:{version}-abc", "share": 1.0, "up": True, "active": True} | fields
        )

    def step(action: str, version: str) -> RolloutStep:
        return RolloutStep(at="t", action=action, bento=f"svc:{version}-abc")

    switched = [step("switch", "v0030"), step("rollout_started", "v0032"), step("switch", "v0032")]
    serving = {"blue": slot("v0030", share=0.0, active=False), "green": slot("v0032")}
    assert with_serving(gate, serving, switched).refit_note() == "; serves as its refit v0032"
    # the operator rolled back: the audit names the bento restored, v0030
    after = {"blue": slot("v0030"), "green": slot("v0032", share=0.0, active=False)}
    rolled = with_serving(gate, after, [*switched, step("rollback", "v0030")])
    assert rolled.serving == ["v0030"] and rolled.refit_rolled_back
    assert rolled.refit_note() == "; refit v0032, rolled back; v0030 serves"
    # the canary failed: the automatic rollback names the refit's bento
    canary = [step("switch", "v0030"), step("rollout_started", "v0032"), step("rollback", "v0032")]
    assert with_serving(gate, {"blue": slot("v0030")}, canary).refit_note() == (
        "; refit v0032, rolled back; v0030 serves"
    )
    assert with_serving(gate, {"blue": slot("v0030")}, canary[:1]).refit_note() == (
        "; refit v0032, not serving; v0030 serves"
    )
    assert with_serving(None, {}, []) is None


def test_a_slot_with_nothing_in_it_is_not_active(registry: Registry, flights_spec) -> None:
    """A state that still names an active slot whose process record is gone shows no active slot."""
    deploy = deploy_steps.deployment(flights_spec, settings.config())
    deploy.record.save(DeployState(active="green"))
    status = collect(flights_spec)
    assert not any(s.active for s in status.serving.values()) and status.stopped_at is None


def test_a_proxy_that_died_leaving_its_socket_is_shown_down_not_raised(
    registry: Registry, flights_spec
) -> None:
    """HAProxy killed leaves its admin socket file with nothing listening: the status still comes."""
    import socket

    deploy = deploy_steps.deployment(flights_spec, settings.config())
    deploy.layout.socket.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(deploy.layout.socket))
    assert deploy.layout.socket.exists()
    status = collect(flights_spec)
    assert not status.health.proxy and all(s.share == 0.0 for s in status.serving.values())
