"""`ct models`, `ct promote`, `ct rollback` on a fresh home: the registry's versions with their gate
verdicts, the champion alias moved by the operator with who and why in the history and the audit
log, and the moves the registry refuses, each as one line."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from ct_assets.lib.core import settings
from ct_assets.lib.core.audit import home_log
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error, register_version

REFUSED = "AUC 0.61 is 0.02 below the champion's"


@pytest.fixture
def registry(home: Path) -> Registry:
    """The flights pipeline's registry in the home: v0001 passed its gate, v0002 failed it, v0003
    was never judged, v0004 passed."""
    config = settings.config()
    models = Registry(config.registry, "flights_delay", config.audit_home)
    register_version(models, passed=True, auc=0.7123)
    register_version(models, passed=False, reasons=[REFUSED, "log-loss rose"], auc=0.61)
    register_version(models, passed=None)
    register_version(models, passed=True, auc=0.73)
    return models


def _champion_file(home: Path) -> dict:
    return json.loads((home / "registry" / "flights_delay" / "champion.json").read_text())


def test_a_fresh_home_says_there_are_no_models_yet(run_ct: RunCt) -> None:
    ran = run_ct("models")
    assert (ran.code, ran.out, ran.err) == (0, "flights_delay has no model versions yet\n", "")


def test_models_lists_each_version_with_its_gate_and_the_champion(run_ct: RunCt, registry: Registry) -> None:
    registry.promote("v0001", who="ann", why="first model")
    ran = run_ct("models")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()  # no trailing spaces: a line without reasons ends at its gate
    assert lines[0] == "* v0001  dataset d  auc 0.7123  gate PASSED"
    assert lines[1] == f"  v0002  dataset d  auc 0.6100  gate FAILED {REFUSED}; log-loss rose"
    assert lines[2] == "  v0003  dataset d  auc -  gate not evaluated"
    assert lines[3] == "  v0004  dataset d  auc 0.7300  gate PASSED"
    assert lines[4].endswith("promote  none -> v0001  by ann: first model")
    assert len(lines) == 5


def test_a_refit_says_which_candidate_it_refits(run_ct: RunCt, registry: Registry) -> None:
    refit = register_version(registry, passed=True, auc=0.7123, refit_of="v0001")
    line = run_ct("models").out.splitlines()[-1]
    assert line == f"  {refit}  dataset d  auc 0.7123  gate PASSED (refit of v0001)"


def test_promote_moves_the_champion_and_records_who_and_why(
    run_ct: RunCt, registry: Registry, home: Path
) -> None:
    first = run_ct("promote", "--version", "v0001", "--why", "first model", "--who", "ann")
    assert (first.code, first.out) == (0, "champion of flights_delay: none -> v0001\n")
    ran = run_ct("promote", "--version", "v0004", "--why", "better AUC")
    assert (ran.code, ran.out) == (0, "champion of flights_delay: v0001 -> v0004\n")
    assert _champion_file(home)["version"] == "v0004"
    moves = home_log(home).entries(pipeline="flights_delay", component="registry")
    assert [(m["action"], m["details"]["version"], m["who"], m["why"]) for m in moves] == [
        ("promote", "v0001", "ann", "first model"),
        ("promote", "v0004", getpass.getuser(), "better AUC"),  # no --who: the OS user
    ]


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("v0002", f"flights_delay v0002 did not pass the gate: {REFUSED}; log-loss rose"),
        ("v0003", "flights_delay v0003 did not pass the gate: it was never evaluated"),
        ("v0009", "flights_delay has no model version v0009"),
    ],
)
def test_promote_refuses_a_version_that_did_not_pass(
    run_ct: RunCt, registry: Registry, home: Path, version: str, message: str
) -> None:
    registry.promote("v0001", who="ann", why="first model")
    ran = run_ct("promote", "--version", version, "--why", "try it")
    assert one_line_error(ran) == f"ct: {message}"
    assert ran.code == 1 and ran.out == ""
    assert _champion_file(home)["version"] == "v0001"
    assert len(registry.history()) == 1


def test_promote_refuses_the_champion_itself_and_a_blank_reason(run_ct: RunCt, registry: Registry) -> None:
    registry.promote("v0001", who="ann", why="first model")
    again = run_ct("promote", "--version", "v0001", "--why", "again")
    assert one_line_error(again) == "ct: flights_delay v0001 is already the champion"
    blank = run_ct("promote", "--version", "v0004", "--why", "  ")
    assert one_line_error(blank) == "ct: a promotion needs who and why"
    assert registry.champion_version() == "v0001"


def test_promote_without_its_arguments_is_a_usage_error(run_ct: RunCt, registry: Registry) -> None:
    ran = run_ct("promote", "--version", "v0001")
    assert ran.code == 2
    assert one_line_error(ran).startswith("ct promote: the following arguments are required: --why")
    assert registry.champion_version() is None


def test_rollback_moves_the_champion_back_to_the_one_it_replaced(
    run_ct: RunCt, registry: Registry, home: Path
) -> None:
    registry.promote("v0001", who="ann", why="first model")
    registry.promote("v0004", who="ann", why="better AUC")
    ran = run_ct("rollback", "--why", "late labels disagree", "--who", "bob")
    assert (ran.code, ran.out) == (0, "champion of flights_delay rolled back: v0004 -> v0001\n")
    assert _champion_file(home)["version"] == "v0001"
    last = registry.history()[-1]
    assert (last.action, last.previous, last.version, last.who, last.why) == (
        "rollback",
        "v0004",
        "v0001",
        "bob",
        "late labels disagree",
    )
    audit = home_log(home).entries(pipeline="flights_delay", component="registry")[-1]
    assert (audit["action"], audit["who"], audit["details"]) == (
        "rollback",
        "bob",
        {"version": "v0001", "previous": "v0004"},
    )


def test_rollback_with_nothing_to_roll_back_to(run_ct: RunCt, registry: Registry) -> None:
    none_yet = run_ct("rollback", "--why", "bad model")
    assert one_line_error(none_yet) == "ct: flights_delay has no champion to roll back"
    registry.promote("v0001", who="ann", why="first model")
    first = run_ct("rollback", "--why", "bad model")
    assert one_line_error(first) == "ct: flights_delay v0001 is the first champion: nothing to roll back to"
    assert registry.champion_version() == "v0001" and len(registry.history()) == 1


def test_rollback_needs_a_reason(run_ct: RunCt) -> None:
    ran = run_ct("rollback")
    assert ran.code == 2
    assert one_line_error(ran).startswith("ct rollback: the following arguments are required: --why")


def test_models_of_an_unknown_pipeline(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("models", "--pipeline", "no_such_pipeline")
    assert one_line_error(ran) == (
        f"ct: no pipeline 'no_such_pipeline' in {settings.REPO_ROOT / 'pipelines'} (have: flights_delay)"
    )
    assert not (home / "registry").exists()
