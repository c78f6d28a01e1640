"""A deployment's state file and audit trail on a temp folder, and the traffic weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.serving.deployment_state import (
    DeploymentRecord,
    DeployState,
    SlotBento,
    SlotProcess,
    other_slot,
)
from ct_assets.lib.serving.traffic import WEIGHT_SCALE, weights


def test_a_new_record_has_nothing_deployed_and_saves_what_it_is_given(tmp_path: Path) -> None:
    record = DeploymentRecord(tmp_path / "deploy" / "p")
    assert record.read() == DeployState() and record.read().active_bento is None
    serving = SlotProcess(bento="p:v2", pid=41, port=3701, started_at="2026-01-01T00:00:00+00:00")
    state = DeployState(
        active="green", slots={"green": serving}, previous=SlotBento(slot="blue", bento="p:v1")
    )
    record.save(state)
    assert DeploymentRecord(tmp_path / "deploy" / "p").read() == state
    assert state.active_bento == "p:v2" and state.bento_in("blue") is None and state.bento_in(None) is None


def test_a_damaged_state_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    record = DeploymentRecord(tmp_path / "deploy" / "p")
    record.state_path.write_text('{"active": "blue", "slots": {"blue": {"bento": "p:v1"}}}')
    with pytest.raises(ValueError, match=r"state\.json is not a valid deployment state.*pid"):
        record.read()


def test_audit_steps_are_read_back_in_order(tmp_path: Path) -> None:
    record = DeploymentRecord(tmp_path / "deploy" / "p")
    record.audit("rollout_started", "test", "deploy p:v1", slot="blue")
    record.audit("switch", "test", "first deployment", slot="blue")
    steps = record.audit_log()
    assert [s["action"] for s in steps] == ["rollout_started", "switch"]
    assert steps[0]["slot"] == "blue" and steps[1]["who"] == "test"


def test_other_slot_and_weights() -> None:
    assert other_slot("blue") == "green" and other_slot("green") == "blue" and other_slot(None) == "blue"
    assert weights({"blue": 0.9, "green": 0.1}) == {"blue": round(0.9 * WEIGHT_SCALE), "green": 26}
    assert weights({"green": 1.0}) == {"blue": 0, "green": WEIGHT_SCALE}
