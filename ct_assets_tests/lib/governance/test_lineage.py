"""Lineage and the audit chain on a real home folder: landing files, DuckDB warehouse, registry with
a trained champion, its bento and a prediction log written by the serving code. `ct lineage` walks a
request id back to the raw files; `ct audit verify` passes, and fails naming the link once a raw file,
the frozen training set or the audit log is tampered with."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ct_assets import cli
from ct_assets.lib.core.audit import home_log
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection, partition_view_sql
from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.governance import chain_check
from ct_assets.lib.model import model_training
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving.deployment_state import DeployState
from ct_assets.lib.serving.scoring import Prediction, log_predictions, new_request_id
from ct_assets_tests.conftest import FIRST_DAYS, ingest_days, write_flights_variant


def build_home(root: Path, flights_landing: Path, name: str) -> dict:
    """A home folder laid out like `$CT_HOME`, with a champion trained on FIRST_DAYS, its bento, and
    one logged request of 5 rows scored by that champion."""
    spec = load_spec(
        write_flights_variant(
            root / "pipelines" / name,
            {
                "name": name,
                "training.window_partitions": 3,
                "training.validation_partitions": 1,
                "training.holdout_partitions": 1,
                "training.min_rows": 100,
                "training.params.iterations": 30,
            },
        )
    )
    landing = root / "landing"
    shutil.copytree(flights_landing / "flights_delay", landing / name)
    con = open_connection(root / "warehouse.duckdb")
    ingest_days(con, spec, landing, FIRST_DAYS)
    registry = Registry(root / "registry", name, audit_home=root)
    candidate = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(candidate.version, verdict={"passed": True, "reasons": [], "notes": ["test"]})
    registry.promote(candidate.version, who="test", why="first model")
    record = registry.champion()
    bento = bento_build.build(spec, record, registry.models / f"{record.model_sha256}.cbm")
    features = con.execute(partition_view_sql(name, "features", [FIRST_DAYS[-1]]) + " LIMIT 5").df()
    con.close()
    layout = record.layout
    scores = model_training.score(load_model(registry.models, record.model_sha256), features, layout)
    request_id = new_request_id()
    predictions = [
        Prediction(request_id, str(e), float(p), bool(p >= record.threshold), record.version)
        for e, p in zip(features[spec.entity_id], scores, strict=True)
    ]
    log_predictions(root / "prediction_log", spec, predictions, features, {}, "blue", 3.0)
    return {
        "spec": spec,
        "registry": registry,
        "bento": str(bento.tag),
        "request_id": request_id,
        "root": root,
        "features": features,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, flights_landing: Path) -> dict:
    root = tmp_path_factory.mktemp("governance")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CT_HOME", str(root))
        return build_home(root, flights_landing, "lineage_flights")


@pytest.fixture
def env(home: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    monkeypatch.setenv("CT_HOME", str(home["root"]))
    monkeypatch.setenv("CT_PIPELINES_DIR", str(home["root"] / "pipelines"))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    monkeypatch.delenv("CT_REGISTRY", raising=False)
    monkeypatch.delenv("CT_WAREHOUSE", raising=False)
    monkeypatch.delenv("CT_LANDING", raising=False)
    yield home


def test_lineage_walks_a_request_back_to_its_raw_files(env: dict, capsys: pytest.CaptureFixture) -> None:
    spec: PipelineSpec = env["spec"]
    assert cli.main(["lineage", env["request_id"], "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["request"]["model_version"] == "v0001" and len(tree["request"]["predictions"]) == 5
    assert tree["request"]["bento"] == env["bento"]
    record = env["registry"].get("v0001")
    assert tree["model"]["model_sha256"] == record.model_sha256 and tree["model"]["artifact_matches"]
    assert tree["dataset"]["version"] == record.dataset_version and tree["dataset"]["matches"]
    assert [(p["key"], p["split"]) for p in tree["partitions"]] == list(
        zip(FIRST_DAYS, ["train", "validation", "holdout"], strict=True)
    )
    landing = env["root"] / "landing" / spec.name
    for partition in tree["partitions"]:
        (item,) = partition["files"]
        assert item["path"] == str(landing / f"{partition['key']}.csv")
        assert item["sha256"] == sha256_of(Path(item["path"])) and item["matches"] and item["in_raw_tags_now"]
        assert item["raw_rows_now"] == item["rows"] == partition["raw_rows_now"] > 0
    assert tree["problems"] == [] and tree["warehouse_compared"]

    assert cli.main(["lineage", env["request_id"]]) == 0
    text = capsys.readouterr().out
    assert f"request {env['request_id']}" in text and "model v0001" in text and "every hash matches" in text
    assert f"partition {FIRST_DAYS[0]} (train)" in text and f"{landing / FIRST_DAYS[0]}.csv" in text


def test_a_request_id_reused_across_two_models_walks_both(
    tmp_path: Path, flights_landing: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A caller that sends one id before and after a rollout: each answering model is walked down to
    its own raw files, in the order of the calls."""
    monkeypatch.setenv("CT_HOME", str(tmp_path))
    built = build_home(tmp_path, flights_landing, "reused_id_flights")
    monkeypatch.setenv("CT_PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    spec, registry, features = built["spec"], built["registry"], built["features"]
    con = open_connection(tmp_path / "warehouse.duckdb")
    second = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    con.close()
    record = registry.get(second.version)
    scores = model_training.score(load_model(registry.models, record.model_sha256), features, record.layout)
    predictions = [
        Prediction(built["request_id"], str(e), float(p), bool(p >= record.threshold), record.version)
        for e, p in zip(features[spec.entity_id], scores, strict=True)
    ]
    log_predictions(tmp_path / "prediction_log", spec, predictions, features, {}, "green", 3.0)

    assert cli.main(["lineage", built["request_id"], "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["model"]["version"] == "v0001"
    assert [other["model"]["version"] for other in tree["other_models"]] == [second.version]
    assert tree["other_models"][0]["partitions"] and tree["problems"] == []

    assert cli.main(["lineage", built["request_id"]]) == 0
    text = capsys.readouterr().out
    assert "the id was sent with 2 calls" in text and f"model {second.version}  sha256" in text
    answered_later = f"the id's calls answered by model {second.version}:"
    assert text.index("model v0001  sha256") < text.index(answered_later)

    (tmp_path / "registry" / spec.name / "models" / f"{record.model_sha256}.cbm").unlink()
    assert cli.main(["lineage", built["request_id"]]) == 1
    assert f"model {second.version}: artifact" in capsys.readouterr().out


def test_an_unknown_request_id_is_a_clear_error(env: dict, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["lineage", "0123456789abcdef"]) == 1
    assert "no prediction with request id '0123456789abcdef' in the prediction log" in capsys.readouterr().err


def _verify(bento: str, capsys: pytest.CaptureFixture) -> tuple[int, list[dict]]:
    code = cli.main(["audit", "verify", "--bento", bento, "--json"])
    return code, json.loads(capsys.readouterr().out)[0]["links"]


def test_the_audit_chain_holds_and_a_tampered_link_breaks_it(
    env: dict, capsys: pytest.CaptureFixture
) -> None:
    code, links = _verify(env["bento"], capsys)
    assert code == 0, links
    assert [link["name"] for link in links] == [
        "bento",
        "bento model",
        "registry",
        "model artifact",
        "training set",
        "partitions and raw files",
        "audit log",
    ]

    raw_file = env["root"] / "landing" / env["spec"].name / f"{FIRST_DAYS[1]}.csv"
    original = raw_file.read_bytes()
    try:
        raw_file.write_bytes(original.replace(b",", b";", 1))
        code, links = _verify(env["bento"], capsys)
        broken = {link["name"]: link["detail"] for link in links if not link["ok"]}
        assert code == 1 and list(broken) == ["partitions and raw files"]
        assert (
            f"partition {FIRST_DAYS[1]} (validation): raw file {raw_file} now hashes to"
            in broken["partitions and raw files"]
        )
    finally:
        raw_file.write_bytes(original)

    dataset = Path(env["registry"].get("v0001").dataset_path)
    original = dataset.read_bytes()
    try:
        frame = pd.read_parquet(dataset)
        frame.loc[0, "distance"] = frame.loc[0, "distance"] + 1
        frame.to_parquet(dataset, index=False)
        code, links = _verify(env["bento"], capsys)
        broken = {link["name"]: link["detail"] for link in links if not link["ok"]}
        assert (
            code == 1
            and list(broken) == ["training set"]
            and "content now hashes to" in broken["training set"]
        )
    finally:
        dataset.write_bytes(original)

    log = home_log(env["root"])
    original = log.path.read_bytes()
    try:
        log.path.write_bytes(original.replace(b'"why":"first model"', b'"why":"forced through"'))
        result = chain_check.check_chain(
            env["spec"].name, DeployState(), env["registry"], log, bento_tag=env["bento"]
        )
        assert not result.ok and result.problems[0].startswith(
            "audit log: audit.jsonl line 1 (seq 1, promote)"
        )
    finally:
        log.path.write_bytes(original)
    assert _verify(env["bento"], capsys)[0] == 0
