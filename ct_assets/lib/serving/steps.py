"""Rolling out a pipeline's champion: the deployment, its compatibility set and health policy,
configured from the spec and the home folder's layout (`settings.Config`)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.settings import Config, use_bentoml_home
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, connection, partition_view_sql, quote
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.data.online_snapshot import published_as_of
from ct_assets.lib.model import model_training
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving.bento_build import UnknownBento, require_bento
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.request_parsing import request_columns
from ct_assets.lib.serving.rollout import Deployment, HealthPolicy, RolloutResult

if TYPE_CHECKING:
    import duckdb


def context_history_hours(spec: PipelineSpec) -> float:
    """Context history the snapshot keeps: the holdout (the compatibility check scores it before any
    traffic) plus `serving.snapshot_history_partitions`, since a rollout may come partitions after the
    training it ships when the pipeline catches up on a backlog."""
    hours = {"daily": 24, "weekly": 24 * 7, "monthly": 24 * 31}[spec.partitions.grain]
    partitions = spec.training.holdout_partitions + 1 + spec.serving.snapshot_history_partitions
    return float(hours * partitions)


def deployment(spec: PipelineSpec, config: Config) -> Deployment:
    """The pipeline's deployment in `config`'s home: slots, proxy and state under `deploy/<pipeline>`."""
    folder = config.deploy / spec.name
    layout = ProxyLayout(
        folder / "proxy",
        spec.serving.proxy_port,
        {"blue": spec.serving.blue_port, "green": spec.serving.green_port},
    )
    env = {
        "CT_ONLINE_SNAPSHOT": str(config.online / spec.name),
        "CT_PREDICTION_LOG": str(config.prediction_log),
        "BENTOML_HOME": str(use_bentoml_home(config.bentoml_home)),
    }
    bentoml = shutil.which("bentoml") or str(Path(sys.executable).parent / "bentoml")
    return Deployment(folder, layout, env, bentoml, audit_home=config.audit_home)


def health_policy(spec: PipelineSpec) -> HealthPolicy:
    serving = spec.serving
    return HealthPolicy(
        canary_share=serving.canary_share,
        window_seconds=serving.health_window_seconds,
        max_window_seconds=serving.max_health_window_seconds,
        min_requests=serving.min_canary_requests,
        max_error_rate=serving.max_error_rate,
        max_p99_ms=serving.max_p99_ms,
        max_score_shift=serving.max_score_shift,
    )


def request_payload(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, partitions: list[str], limit: int
) -> list[dict[str, Any]]:
    """The first `limit` validated rows of `partitions` by entity id (the same rows on every call),
    as a caller would send them (no post-event fields), as JSON."""
    ordered = f" ORDER BY {PARTITION_COLUMN}, {quote(spec.entity_id)} LIMIT {int(limit)}"
    rows = con.execute(partition_view_sql(spec.name, "validated", partitions) + ordered).df()
    return json.loads(rows[list(request_columns(spec))].to_json(orient="records", date_format="iso"))


def reference_scores(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    record: ModelVersion,
    registry: Registry,
    payload: list[dict[str, Any]],
    partitions: list[str],
) -> list[float]:
    """The model's in-process scores on the feature table's rows for the payload's entities: what a
    slot serving this model must answer for the same payload."""
    features = (
        con.execute(partition_view_sql(spec.name, "features", partitions)).df().set_index(spec.entity_id)
    )
    model = load_model(registry.models, record.model_sha256)
    ids = [row[spec.entity_id] for row in payload]
    scores = model_training.score(model, features.loc[ids].reset_index(), record.layout)
    return [float(s) for s in scores]


def compatibility_set(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, record: ModelVersion, registry: Registry
) -> tuple[list[dict], list[float]]:
    """Holdout rows as a caller would send them, and the champion's scores on their features."""
    holdout = record.partitions["holdout"]
    payload = request_payload(con, spec, holdout, spec.serving.compatibility_rows)
    return payload, reference_scores(con, spec, record, registry, payload, holdout)


def compatibility_path(spec: PipelineSpec, version: str, config: Config) -> Path:
    """Where a model version's compatibility set is published: `deploy/<pipeline>/compatibility/`."""
    return config.deploy / spec.name / "compatibility" / f"{version}.json"


def publish_compatibility(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    record: ModelVersion,
    registry: Registry,
    config: Config,
) -> Path:
    """Write the champion's compatibility set beside the deployment, so a rollout needs no warehouse
    (and never holds the warehouse's writer slot through its health window)."""
    rows, expected = compatibility_set(con, spec, record, registry)
    path = compatibility_path(spec, record.version, config)
    write_atomically(path, json.dumps({"rows": rows, "scores": expected}).encode())
    return path


def model_of_bento(spec: PipelineSpec, registry: Registry, tag: str) -> ModelVersion:
    """The registered model version whose bento `tag` names (`UnknownBento` if none does)."""
    for record in registry.versions():
        if bento_build.bento_tag(spec, record) == tag.lower():
            return record
    raise UnknownBento(f"bento {tag!r} serves no model version of {spec.name}: `ct models` lists them")


def roll_out(
    spec: PipelineSpec, registry: Registry, bento_tag: str, who: str, config: Config
) -> RolloutResult:
    """Roll a bento of the pipeline out (the champion's, or an earlier version's) with the
    compatibility set of the model it serves: the one its `bento` step published, or, for a version
    no bento step published one for, one read from the warehouse now. A tag that names no bento in
    the store, or none of the registry's models, raises `UnknownBento` before anything is waited for
    or started."""
    if registry.champion() is None:
        raise RuntimeError(f"{spec.name} has no champion to roll out")
    record = model_of_bento(spec, registry, bento_tag)
    path = compatibility_path(spec, record.version, config)
    if not path.exists() and config.warehouse.exists():
        with connection(config.warehouse, read_only=True) as con:
            publish_compatibility(con, spec, record, registry, config)
    if not path.exists():
        raise RuntimeError(
            f"no compatibility set for {record.version} at {path}: materialize the bento asset first"
        )
    published = json.loads(path.read_text())
    rows, expected = published["rows"], published["scores"]
    require_bento(bento_tag)
    wait_for_snapshot(spec, config, max(record.partitions["holdout"]))
    return deployment(spec, config).rollout(
        bento_tag,
        (rows, expected),
        expected,
        health_policy(spec),
        who=who,
        auto_switch=spec.serving.auto_rollout,
    )


def snapshot_as_of(spec: PipelineSpec, config: Config) -> str | None:
    """The partition the published online snapshot is as of (None before the first one)."""
    return published_as_of(config.online / spec.name)


def wait_for_snapshot(
    spec: PipelineSpec, config: Config, partition: str, timeout: float = 300, poll: float = 2
) -> None:
    """Wait until the online snapshot covers `partition` (the model's last holdout partition): the
    ingest run that built the features publishes the snapshot a few steps later. Serving features
    from an older snapshot would miss context (weather) and fail the compatibility check."""
    deadline = time.monotonic() + timeout
    while (as_of := snapshot_as_of(spec, config) or "") < partition:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the online snapshot is as of {as_of or None}, older than the model's holdout "
                f"(up to {partition}); materialize online_snapshot for {partition} and roll out again"
            )
        time.sleep(poll)
