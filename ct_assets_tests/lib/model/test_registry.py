"""Registry: versions, a champion alias that moves only through a passed gate, history, audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets.lib.model.registry import Registry, RegistryError
from ct_assets_tests.conftest import trained_model


def _version(registry: Registry, passed: bool | None) -> str:
    version = registry.register(trained_model(model_sha256="x", dataset_version="d"))
    if passed is not None:
        registry.update(version, verdict={"passed": passed, "reasons": [] if passed else ["AUC 0.5 < 0.6"]})
    return version


def test_promotion_needs_a_passed_verdict(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "p")
    failed, unevaluated = _version(registry, False), _version(registry, None)
    with pytest.raises(RegistryError, match=r"v0001 did not pass the gate: AUC 0\.5 < 0\.6"):
        registry.promote(failed, who="ann", why="try")
    with pytest.raises(RegistryError, match="never evaluated"):
        registry.promote(unevaluated, who="ann", why="try")
    assert registry.champion_version() is None


def test_rollback_returns_to_the_previous_champion_and_is_audited(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "p")
    first, second = _version(registry, True), _version(registry, True)
    registry.promote(first, who="dagster run 1", why="passed the evaluation gate")
    registry.promote(second, who="dagster run 2", why="passed the evaluation gate")
    with pytest.raises(RegistryError, match="who and why"):
        registry.rollback(who="ann", why=" ")
    move = registry.rollback(who="ann", why="complaints from ops")
    assert (move.version, move.previous, move.action) == (first, second, "rollback")
    assert [m.action for m in registry.history()] == ["promote", "promote", "rollback"]
    assert registry.champion_version() == first
    audit = registry.audit_log()
    assert [(a["action"], a["version"], a["who"]) for a in audit] == [
        ("promote", first, "dagster run 1"),
        ("promote", second, "dagster run 2"),
        ("rollback", first, "ann"),
    ]
    assert audit[-1]["why"] == "complaints from ops" and audit[-1]["at"]
    with pytest.raises(RegistryError, match="first champion: nothing to roll back to"):
        registry.rollback(who="ann", why="again")
