"""`ct lineage`, `ct audit`, `ct retention` on a fresh home: a request the serving code logged is
traced to its model with the artifact re-hashed; the audit log is listed and its hash chain verified
(an edited line is named); retention deletes the landing files past the spec's retention but those
the champion was trained on, and a dry run only lists them. The full chain down to the raw files on
a trained champion is in `ct_assets_tests/lib/governance/test_lineage.py`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core import settings
from ct_assets.lib.core.audit import home_log
from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.scoring import Prediction, log_predictions, new_request_id
from ct_assets_tests.app.cli.conftest import RunCt, one_line_error, register_version
from ct_assets_tests.conftest import FIRST_DAYS, FLIGHTS_SPEC, write_flights_variant

BUILT_IN = settings.REPO_ROOT / "pipelines"
NO_PORTS = {"serving.proxy_port": None, "serving.blue_port": None, "serving.green_port": None}
MODEL_BYTES = b"the champion's CatBoost file"


@pytest.fixture
def registry(home: Path) -> Registry:
    """The flights registry with champion v0001, whose model file is in the registry (its frozen
    training set is not)."""
    config = settings.config()
    models = Registry(config.registry, "flights_delay", config.audit_home)
    sha = hashlib.sha256(MODEL_BYTES).hexdigest()
    dataset = str(models.dataset_path("d"))
    version = register_version(models, passed=True, model_sha256=sha, dataset_path=dataset)
    models.models.mkdir(parents=True)
    (models.models / f"{sha}.cbm").write_bytes(MODEL_BYTES)
    models.promote(version, who="ann", why="first model")
    return models


def _log_request(home: Path, version: str) -> str:
    """One request of two rows scored by `version`, written by serving's own log writer."""
    request_id = new_request_id()
    predictions = [
        Prediction(request_id, "f1", 0.8, True, version),
        Prediction(request_id, "f2", 0.1, False, version),
    ]
    features = pd.DataFrame({"distance": [1000.0, 200.0], "carrier": ["UA", "DL"]})
    log_predictions(home / "prediction_log", load_spec(FLIGHTS_SPEC), predictions, features, {}, "blue", 3.0)
    return request_id


def test_lineage_of_an_unknown_request(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("lineage", "0123abcd")
    assert one_line_error(ran) == (
        f"ct: no prediction with request id '0123abcd' in the prediction log under {home / 'prediction_log'} "
        "(wrong id, another home folder, a request the service refused with a 4xx, which scores "
        "nothing, or removed by retention: see the audit log)"
    )
    assert ran.code == 1


def test_lineage_traces_a_logged_request_to_its_model(run_ct: RunCt, home: Path, registry: Registry) -> None:
    request_id = _log_request(home, "v0001")
    ran = run_ct("lineage", request_id)
    assert "model v0001" in ran.out and "artifact ok  (champion)" in ran.out
    assert request_id in ran.out and "f1" in ran.out and "f2" in ran.out
    assert ran.code == 1  # the one broken link: the training set is not in the registry
    assert ran.out.strip().splitlines()[-2:] == [
        "BROKEN LINKS:",
        f"  dataset d: frozen training set {registry.dataset_path('d')} is missing",
    ]

    as_json = json.loads(run_ct("lineage", request_id, "--json").out)
    assert as_json["request"]["model_version"] == "v0001" and as_json["request"]["slot"] == "blue"
    assert [p["entity_id"] for p in as_json["request"]["predictions"]] == ["f1", "f2"]
    assert as_json["model"]["artifact_matches"] is True

    artifact = registry.models / f"{registry.champion().model_sha256}.cbm"
    artifact.write_bytes(MODEL_BYTES + b" changed")
    problems = json.loads(run_ct("lineage", request_id, "--json").out)["problems"]
    assert problems[0] == (
        f"model v0001: artifact {artifact} no longer hashes to its recorded sha256 "
        f"{registry.champion().model_sha256[:12]}"
    )


@pytest.fixture
def second_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A second pipeline, `delays_b`, loaded beside the built-in one; returns its folder's parent."""
    specs = tmp_path / "specs"
    write_flights_variant(specs / "delays_b", {"name": "delays_b", **NO_PORTS})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(specs))
    return specs


def test_lineage_looks_only_in_the_pipeline_given(
    run_ct: RunCt, home: Path, registry: Registry, second_pipeline: Path
) -> None:
    request_id = _log_request(home, "v0001")
    ran = run_ct("lineage", request_id, "--pipeline", "delays_b")
    assert one_line_error(ran).startswith(f"ct: no prediction with request id '{request_id}'")


def test_lineage_in_an_unknown_pipeline(
    run_ct: RunCt, home: Path, registry: Registry, second_pipeline: Path
) -> None:
    request_id = _log_request(home, "v0001")
    ran = run_ct("lineage", request_id, "--pipeline", "nosuch")
    assert one_line_error(ran) == (
        f"ct: no pipeline 'nosuch' in {BUILT_IN}, {second_pipeline} (have: flights_delay, delays_b)"
    )
    assert ran.code == 1


def test_lineage_of_a_request_whose_model_is_not_in_the_registry(run_ct: RunCt, home: Path) -> None:
    request_id = _log_request(home, "v0007")
    assert one_line_error(run_ct("lineage", request_id)) == "ct: flights_delay has no model version v0007"


def test_audit_verify_on_a_fresh_home(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("audit", "verify")
    assert ran.code == 0, ran.err
    assert ran.out.splitlines() == [
        "flights_delay: bento - -> model -",
        "  [ok] deployment: nothing is deployed and there is no champion yet",
        f"  [ok] audit log: 0 entries chained in {home / 'audit.jsonl'}",
        "chain intact: every hash matches",
    ]


def _links(ran_json: str) -> dict[str, bool]:
    (result,) = json.loads(ran_json)
    return {link["name"]: link["ok"] for link in result["links"]}


def test_audit_verify_names_an_edited_audit_line_and_a_missing_model(
    run_ct: RunCt, home: Path, registry: Registry
) -> None:
    before = run_ct("audit", "verify", "--json")
    assert _links(before.out)["model artifact"] and _links(before.out)["audit log"]
    log = home / "audit.jsonl"
    log.write_text(log.read_text().replace('"why":"first model"', '"why":"someone else\'s model"'))
    (registry.models / f"{registry.champion().model_sha256}.cbm").unlink()

    after = run_ct("audit", "verify", "--json")
    assert after.code == 1
    links = _links(after.out)
    assert not links["audit log"] and not links["model artifact"]
    text = run_ct("audit", "verify")
    assert text.code == 1
    assert re.search(
        r"\[BROKEN\] audit log: audit.jsonl line 1 \(seq 1, promote\): "
        r"content does not match its hash .*edited",
        text.out,
    )
    assert "[BROKEN] model artifact: " in text.out and text.out.strip().endswith("broken link(s)")


def test_audit_log_shows_the_latest_entries(run_ct: RunCt, home: Path, registry: Registry) -> None:
    register_version(registry, passed=True)
    registry.promote("v0002", who="bob", why="better AUC")
    entries = run_ct("audit", "log").out.splitlines()
    assert len(entries) == 2
    assert re.fullmatch(
        r"\s+1  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d  promote\s+flights_delay/champion\s+by ann: first model",
        entries[0],
    )
    assert entries[1].endswith("by bob: better AUC")
    assert run_ct("audit", "log", "--last", "1").out.splitlines() == entries[1:]
    assert run_ct("audit", "log", "--last", "5").out.splitlines() == entries
    none = run_ct("audit", "log", "--last", "0")
    assert none.code == 0 and none.out == ""


def test_audit_log_of_one_pipeline(
    run_ct: RunCt, home: Path, registry: Registry, second_pipeline: Path
) -> None:
    assert len(run_ct("audit", "log", "--pipeline", "flights_delay").out.splitlines()) == 1
    assert run_ct("audit", "log", "--pipeline", "delays_b").out == ""
    unknown = run_ct("audit", "log", "--pipeline", "nosuch")
    assert one_line_error(unknown) == (
        f"ct: no pipeline 'nosuch' in {BUILT_IN}, {second_pipeline} (have: flights_delay, delays_b)"
    )


def test_audit_log_as_json(run_ct: RunCt, home: Path, registry: Registry) -> None:
    register_version(registry, passed=True)
    registry.promote("v0002", who="bob", why="better AUC")
    ran = run_ct("audit", "log", "--json", "--last", "1")
    assert ran.code == 0, ran.err
    (entry,) = json.loads(ran.out)
    assert entry == home_log(home).entries()[-1]
    assert entry["who"] == "bob" and entry["subject"] == "flights_delay/champion"
    assert json.loads(run_ct("audit", "log", "--json", "--last", "0").out) == []


@pytest.mark.parametrize("last", ["-3", "two"])
def test_audit_log_refuses_a_count_below_zero(run_ct: RunCt, last: str) -> None:
    ran = run_ct("audit", "log", "--last", last)
    assert ran.code == 2
    assert one_line_error(ran) == (
        f"ct audit: argument --last: expected a whole number of 0 or more, got '{last}' (see ct audit --help)"
    )


def test_audit_log_refuses_bento(run_ct: RunCt, registry: Registry) -> None:
    ran = run_ct("audit", "log", "--bento", "flights_delay_service:abc")
    assert ran.code == 2
    assert one_line_error(ran) == (
        "ct: --bento is for `ct audit verify` (the bento whose chain to check), not `ct audit log`"
    )
    assert ran.out == ""


def test_audit_with_an_unknown_action(run_ct: RunCt) -> None:
    ran = run_ct("audit", "check")
    assert ran.code == 2
    assert "argument action: invalid choice: 'check' (choose from 'verify', 'log')" in one_line_error(ran)


@pytest.fixture
def landed(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flights_landing: Path) -> Registry:
    """A pipeline whose raw data is kept one day from its newest partition, three landed days,
    and a champion trained on the second."""
    specs = tmp_path / "specs"
    retention = {"raw_days": 1, "prediction_log_days": 30, "measure_from": "latest_partition"}
    write_flights_variant(specs / "delays_b", {"name": "delays_b", "retention": retention, **NO_PORTS})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(specs))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    shutil.copytree(flights_landing / "flights_delay", home / "landing" / "delays_b")
    config = settings.config()
    models = Registry(config.registry, "delays_b", config.audit_home)
    version = register_version(models, passed=True, partitions={"train": [FIRST_DAYS[1]], "holdout": []})
    models.promote(version, who="ann", why="first model")
    return models


def test_retention_deletes_what_is_past_retention_but_the_champions_data(
    run_ct: RunCt, home: Path, landed: Registry
) -> None:
    folder = home / "landing" / "delays_b"
    oldest = folder / f"{FIRST_DAYS[0]}.csv"
    oldest_sha = sha256_of(oldest)
    ran = run_ct("retention", "--who", "carol")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert report["expired"] == FIRST_DAYS[:2] and report["deleted_partitions"] == FIRST_DAYS[:1]
    assert report["kept"] == {FIRST_DAYS[1]: "training data of v0001, the champion"}
    assert report["files_deleted"] == [
        {"path": str(oldest), "sha256": oldest_sha, "bytes": report["files_deleted"][0]["bytes"]}
    ]
    assert not oldest.exists()
    assert sorted(p.name for p in folder.glob("*.csv")) == [f"{day}.csv" for day in FIRST_DAYS[1:]]
    (entry,) = home_log(home).entries(pipeline="delays_b", component="retention")
    assert entry["who"] == "carol" and entry["details"]["partitions"] == FIRST_DAYS[:1]


def test_a_retention_dry_run_before_any_ingest_says_so(run_ct: RunCt, home: Path, landed: Registry) -> None:
    ran = run_ct("retention", "--dry-run")
    assert ran.code == 1 and one_line_error(ran).startswith(
        f"ct: no warehouse at {home / 'warehouse.duckdb'} yet"
    )
    assert (home / "landing" / "delays_b" / f"{FIRST_DAYS[0]}.csv").exists()


def test_a_retention_dry_run_deletes_nothing(run_ct: RunCt, home: Path, landed: Registry) -> None:
    open_connection(home / "warehouse.duckdb").close()  # a dry run opens the warehouse read-only
    ran = run_ct("retention", "--dry-run")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    assert report["dry_run"] is True and report["deleted_partitions"] == FIRST_DAYS[:1]
    assert (home / "landing" / "delays_b" / f"{FIRST_DAYS[0]}.csv").exists()
    assert home_log(home).entries(component="retention") == []
