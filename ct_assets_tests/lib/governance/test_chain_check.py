"""The audit chain check on a real home folder (warehouse, registry with a champion, its bento):
every link holds, and each kind of break names its link."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ct_assets.lib.core.audit import AuditLog, home_log
from ct_assets.lib.governance.chain_check import ChainResult, check_chain
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.deployment_state import DeployState
from ct_assets_tests.lib.governance.test_lineage import build_home

LINKS = [
    "bento",
    "bento model",
    "registry",
    "model artifact",
    "training set",
    "partitions and raw files",
    "audit log",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, flights_landing: Path) -> dict:
    """One home for the module; tests copy it before changing anything in it."""
    root = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CT_HOME", str(root))
        return build_home(root, flights_landing, "chain_flights")


@pytest.fixture
def home(built: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """A private copy of the home (the bento stays in the shared BentoML store, read only)."""
    root = tmp_path / "home"
    shutil.copytree(built["root"], root)
    monkeypatch.setenv("CT_HOME", str(root))
    registry = Registry(root / "registry", built["spec"].name, audit_home=root)
    # records hold absolute paths into the home: point the copy's records at the copy
    for path in (registry.folder / "versions").glob("v*.json"):
        path.write_text(path.read_text().replace(str(built["root"]), str(root)))
    yield {**built, "root": root, "registry": registry, "log": home_log(root)}


def _check(home: dict, **kwargs) -> ChainResult:
    return check_chain(home["spec"].name, DeployState(), home["registry"], home["log"], **kwargs)


def test_the_bentos_chain_holds_with_the_warehouse_compared(
    built: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the built home itself, read only (its warehouse holds the landing files' own paths)."""
    import duckdb

    monkeypatch.setenv("CT_HOME", str(built["root"]))
    con = duckdb.connect(str(built["root"] / "warehouse.duckdb"), read_only=True)
    try:
        result = check_chain(
            built["spec"].name,
            DeployState(),
            built["registry"],
            home_log(built["root"]),
            con=con,
            bento_tag=built["bento"],
        )
    finally:
        con.close()
    assert result.ok, result.problems
    assert [link.name for link in result.links] == LINKS
    assert result.model_version == "v0001" and result.bento == built["bento"]
    assert "(warehouse not compared)" not in result.links[5].detail
    assert result.render().endswith("chain intact: every hash matches")
    assert json.loads(json.dumps(result.as_dict()))["ok"] is True


def test_without_a_deployment_the_champions_chain_is_walked(home: dict) -> None:
    result = _check(home)
    assert result.ok, result.problems
    assert result.links[0].detail == "nothing is deployed: checking the champion's chain"
    assert "(warehouse not compared)" in result.links[-2].detail


def test_an_unknown_bento_breaks_the_first_link(home: dict) -> None:
    result = _check(home, bento_tag="chain_flights:nosuchbento")
    assert not result.ok
    assert result.problems[0] == "bento: chain_flights:nosuchbento is not in the BentoML store"
    assert "1 broken link(s)" in result.render()


def test_a_changed_model_artifact_breaks_its_link(home: dict) -> None:
    record = home["registry"].get("v0001")
    artifact = home["registry"].models / f"{record.model_sha256}.cbm"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    broken = [p.split(":")[0] for p in _check(home).problems]
    assert broken == ["model artifact"]


def test_a_champion_move_missing_from_the_audit_log_is_found(home: dict) -> None:
    home["log"].path.unlink()
    home["log"].head_path.unlink(missing_ok=True)
    (problem,) = _check(home).problems
    assert problem.startswith("audit log: the registry's champion is v0001 but the audit log's last")
    assert "missing (entries lost)" in problem


def test_an_empty_home_has_nothing_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    registry = Registry(tmp_path / "registry", "empty")
    result = check_chain("empty", DeployState(), registry, AuditLog(tmp_path / "audit.jsonl"))
    assert result.ok and result.model_version is None
    first = result.links[0]
    assert (first.name, first.detail) == ("deployment", "nothing is deployed and there is no champion yet")
