"""The rollout steps on a real warehouse, online snapshot and registry with a small trained champion:
the deployment and health policy come from the spec and the home, the request payload is what a
caller sends, the compatibility set's scores are what serving the champion in process answers, and
a rollout that cannot start says why (no champion, no compatibility set, a stale snapshot)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection, partition_view_sql
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.model import model_training
from ct_assets.lib.model.model_store import load_model, save_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import bento_build, steps
from ct_assets.lib.serving.deployment_state import DeployState
from ct_assets.lib.serving.predictor import Predictor
from ct_assets.lib.serving.request_parsing import request_columns, validate_request
from ct_assets_tests.conftest import ingest_days, trained_model, write_flights_variant

DAYS = ["2013-01-01", "2013-01-02"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> PipelineSpec:
    folder = tmp_path_factory.mktemp("steps_spec")
    return load_spec(
        write_flights_variant(
            folder,
            {
                "training.params.iterations": 30,
                "training.holdout_partitions": 1,
                "serving.compatibility_rows": 25,
                "serving.snapshot_history_partitions": 2,
            },
        )
    )


@pytest.fixture(scope="module")
def home(
    tmp_path_factory: pytest.TempPathFactory, spec: PipelineSpec, flights_landing: Path
) -> Iterator[dict[str, Any]]:
    """Two days of features, the snapshot as of the second, and a champion trained on the first with
    the second as its holdout (tests only read them)."""
    built = build_home(Config.under(tmp_path_factory.mktemp("steps_home")), spec, flights_landing)
    try:
        yield built
    finally:
        built["con"].close()


def build_home(config: Config, spec: PipelineSpec, flights_landing: Path) -> dict[str, Any]:
    """The `home` fixture's folder under `config`, its warehouse connection open."""
    con = open_connection(config.warehouse)
    ingest_days(con, spec, flights_landing, DAYS)
    online_snapshot.publish(con, spec, DAYS[1], config.online / spec.name, history_hours=48)
    layout = FeatureLayout.of(spec)
    first = con.execute(partition_view_sql(spec.name, "features", [DAYS[0]])).df()
    model = model_training.train(first, first, spec, layout, spec.training.params)
    registry = Registry(config.registry, spec.name, config.audit_home)
    version = registry.register(
        trained_model(
            pipeline=spec.name,
            model_sha256=save_model(registry.models, model),
            layout=layout,
            partitions={"train": [DAYS[0]], "holdout": [DAYS[1]]},
        )
    )
    registry.update(version, verdict={"passed": True, "reasons": []})
    registry.promote(version, "test", "the champion the steps roll out")
    return {"con": con, "config": config, "registry": registry, "record": registry.get(version)}


@pytest.mark.parametrize(("grain", "hours"), [("daily", 24), ("weekly", 24 * 7), ("monthly", 24 * 31)])
def test_the_snapshot_keeps_the_holdout_and_the_backlog_partitions(tmp_path: Path, grain, hours) -> None:
    variant = load_spec(
        write_flights_variant(
            tmp_path,
            {
                "partitions.grain": grain,
                "partitions.start": "2012-12-30" if grain == "weekly" else "2013-01-01",
                "training.holdout_partitions": 2,
                "serving.snapshot_history_partitions": 5,
            },
        )
    )
    assert steps.context_history_hours(variant) == hours * (2 + 1 + 5)


def test_the_deployment_lives_in_the_home_on_the_specs_ports(spec: PipelineSpec, tmp_path: Path) -> None:
    config = Config.under(tmp_path / "home")
    deployment = steps.deployment(spec, config)
    assert deployment.folder == config.deploy / spec.name and deployment.folder.is_dir()
    layout = deployment.layout
    assert layout.folder == config.deploy / spec.name / "proxy" and layout.port == spec.serving.proxy_port
    assert layout.slot_ports == {"blue": spec.serving.blue_port, "green": spec.serving.green_port}
    assert deployment.slot_env["CT_ONLINE_SNAPSHOT"] == str(config.online / spec.name)
    assert deployment.slot_env["CT_PREDICTION_LOG"] == str(config.prediction_log)
    # BentoML reads its home once per process: the one already set (the test session's) is kept.
    assert deployment.slot_env["BENTOML_HOME"] == os.environ["BENTOML_HOME"]
    assert Path(deployment.bentoml).name == "bentoml" and Path(deployment.bentoml).exists()
    assert deployment.record.audit_home == config.audit_home
    assert deployment.state() == DeployState()


def test_the_health_policy_is_the_specs_serving_section(tmp_path: Path) -> None:
    variant = load_spec(
        write_flights_variant(
            tmp_path,
            {
                "serving.canary_share": 0.2,
                "serving.health_window_seconds": 12.5,
                "serving.max_health_window_seconds": 40,
                "serving.min_canary_requests": 7,
                "serving.max_error_rate": 0.05,
                "serving.max_p99_ms": 99.0,
                "serving.max_score_shift": 0.4,
            },
        )
    )
    policy = steps.health_policy(variant)
    assert asdict(policy) == {
        "canary_share": 0.2,
        "window_seconds": 12.5,
        "min_requests": 7,
        "max_window_seconds": 40,
        "max_error_rate": 0.05,
        "max_p99_ms": 99.0,
        "max_score_shift": 0.4,
    }


def test_the_payload_is_what_a_caller_sends_for_the_partitions(home, spec: PipelineSpec) -> None:
    payload = steps.request_payload(home["con"], spec, [DAYS[1]], 40)
    assert len(payload) == 40
    assert all(list(row) == list(request_columns(spec)) for row in payload)  # no post-event field
    assert all(row["flight_id"].startswith(f"{DAYS[1]}/") for row in payload)
    assert payload[0]["sched_dep_at"].endswith("Z")  # ISO 8601 in UTC, as JSON carries it
    assert len(validate_request(payload, spec)) == 40  # the request rules accept it as it is
    both = steps.request_payload(home["con"], spec, DAYS, 100_000)
    assert {row["flight_id"][:10] for row in both} == set(DAYS)
    assert steps.request_payload(home["con"], spec, [DAYS[1]], 0) == []
    ids = [row["flight_id"] for row in both]
    assert ids == sorted(ids)  # the first rows by partition and id: the same rows on every call
    assert steps.request_payload(home["con"], spec, DAYS, 25) == both[:25]


def test_reference_scores_are_what_serving_the_champion_answers(home, spec: PipelineSpec) -> None:
    """The rollout's bar for a new slot: the champion served in process (features from the online
    snapshot) reproduces the scores computed from the feature table, row for row."""
    con, registry, record = home["con"], home["registry"], home["record"]
    payload = steps.request_payload(con, spec, [DAYS[1]], 60)
    expected = steps.reference_scores(con, spec, record, registry, payload, [DAYS[1]])
    assert len(expected) == 60 and all(0 < s < 1 for s in expected) and len(set(expected)) > 10
    model = load_model(registry.models, record.model_sha256)
    layout = record.layout
    served = Predictor(spec, home["config"].online / spec.name, model, layout, 0.5).rows(payload)
    assert served.probabilities == pytest.approx(expected, abs=1e-6)
    reversed_scores = steps.reference_scores(con, spec, record, registry, payload[::-1], [DAYS[1]])
    assert reversed_scores == expected[::-1]  # in the payload's order


def test_the_compatibility_set_is_the_holdout_and_is_published_beside_the_deployment(
    home, spec: PipelineSpec
) -> None:
    con, registry, record, config = home["con"], home["registry"], home["record"], home["config"]
    rows, scores = steps.compatibility_set(con, spec, record, registry)
    assert len(rows) == len(scores) == spec.serving.compatibility_rows == 25
    assert all(row["flight_id"].startswith(f"{DAYS[1]}/") for row in rows)  # the holdout partition
    path = steps.publish_compatibility(con, spec, record, registry, config)
    assert path == steps.compatibility_path(spec, record.version, config)
    assert path == config.deploy / spec.name / "compatibility" / f"{record.version}.json"
    assert json.loads(path.read_text()) == {"rows": rows, "scores": scores}


def test_a_rollout_without_a_champion_says_so(spec: PipelineSpec, tmp_path: Path) -> None:
    config = Config.under(tmp_path)
    registry = Registry(config.registry, spec.name, config.audit_home)
    with pytest.raises(RuntimeError, match=f"{spec.name} has no champion to roll out"):
        steps.roll_out(spec, registry, "flights_delay:abc", "test", config)


def test_a_rollout_without_a_published_compatibility_set_says_what_to_do(home, spec, tmp_path) -> None:
    config = Config.under(tmp_path)  # a home where the bento step never ran, and no warehouse
    tag = bento_build.bento_tag(spec, home["record"])
    with pytest.raises(RuntimeError) as error:
        steps.roll_out(spec, home["registry"], tag, "test", config)
    path = steps.compatibility_path(spec, home["record"].version, config)
    assert str(error.value) == (
        f"no compatibility set for {home['record'].version} at {path}: materialize the bento asset first"
    )
    assert not (config.deploy / spec.name / "state.json").exists()  # nothing was started


def test_a_rollout_of_a_bento_that_serves_no_registered_model_is_refused(home, spec) -> None:
    with pytest.raises(
        bento_build.UnknownBento, match="bento 'flights_delay:abc' serves no model version of"
    ):
        steps.roll_out(spec, home["registry"], "flights_delay:abc", "test", home["config"])


def test_a_version_other_than_the_champion_rolls_out_with_its_own_compatibility_set(
    spec: PipelineSpec, tmp_path: Path, flights_landing: Path
) -> None:
    """Its bento must answer what its own model scores, not the champion's. A version no bento step
    published a set for gets one from the warehouse, before the tag is looked up in the store."""
    built = build_home(Config.under(tmp_path), spec, flights_landing)
    built["con"].close()
    registry, config, champion = built["registry"], built["config"], built["record"]
    other = registry.get(
        registry.register(
            trained_model(
                pipeline=spec.name,
                model_sha256=champion.model_sha256,
                layout=champion.layout,
                partitions=champion.partitions,
            )
        )
    )
    tag = bento_build.bento_tag(spec, other)
    with pytest.raises(bento_build.UnknownBento, match="in the bento store"):
        steps.roll_out(spec, registry, tag, "test", config)
    published = json.loads(steps.compatibility_path(spec, other.version, config).read_text())
    assert len(published["rows"]) == len(published["scores"]) == spec.serving.compatibility_rows
    assert not steps.compatibility_path(spec, champion.version, config).exists()


def test_waiting_for_a_snapshot_that_never_comes_names_the_partition(spec: PipelineSpec, tmp_path) -> None:
    config = Config.under(tmp_path)
    assert steps.snapshot_as_of(spec, config) is None
    started = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        steps.wait_for_snapshot(spec, config, DAYS[1], timeout=0.3, poll=0.05)
    assert 0.3 <= time.monotonic() - started < 3
    assert str(error.value) == (
        f"the online snapshot is as of None, older than the model's holdout (up to {DAYS[1]}); "
        f"materialize online_snapshot for {DAYS[1]} and roll out again"
    )


def test_a_snapshot_older_than_the_holdout_is_waited_for(home, spec: PipelineSpec, tmp_path: Path) -> None:
    config = Config.under(tmp_path)
    folder = config.online / spec.name
    online_snapshot.publish(home["con"], spec, DAYS[0], folder, history_hours=24)
    assert steps.snapshot_as_of(spec, config) == DAYS[0]
    steps.wait_for_snapshot(spec, config, DAYS[0], timeout=0.1)  # covers it: no wait
    with pytest.raises(RuntimeError, match=f"is as of {DAYS[0]}, older than the model's holdout"):
        steps.wait_for_snapshot(spec, config, DAYS[1], timeout=0.2, poll=0.05)
    later = threading.Timer(
        0.5, online_snapshot.publish, (home["con"].cursor(), spec, DAYS[1], folder), {"history_hours": 24}
    )
    started = time.monotonic()
    later.start()
    steps.wait_for_snapshot(spec, config, DAYS[1], timeout=30, poll=0.05)
    assert 0.4 < time.monotonic() - started < 20
    assert steps.snapshot_as_of(spec, config) == DAYS[1]
    later.join()
