"""Deploying a pipeline's champion outside Dagster (`ct deploy start`), with the deploy assets' own
library steps: the online snapshot as of the newest features partition (when the published one is
older), the champion's bento (built once, then reused), its compatibility set, and the rollout.

It works on a stopped deployment (the champion starts as the first one, taking all traffic) and on
a running one (canary, then switch or rollback), and returns the rollout's result; a rolled-back
rollout is the caller's failure to report. When the champion's bento already serves all traffic
from a healthy active slot, only the snapshot is refreshed: nothing is built or started, and the
result says so (`already_serving`).
While another change holds the deployment (a rollout, a stop...) it is refused at once, before
anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, connection, table_exists, table_name
from ct_assets.lib.data import online_snapshot
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving import bento_build, steps
from ct_assets.lib.serving.deployment_state import other_slot
from ct_assets.lib.serving.rollout import Deployment, RolloutResult

if TYPE_CHECKING:
    import duckdb


def newest_features_partition(con: duckdb.DuckDBPyConnection, spec: PipelineSpec) -> str | None:
    """The newest partition the warehouse holds features for (None before the first)."""
    if not table_exists(con, spec.name, "features"):
        return None
    row = con.execute(f"SELECT max({PARTITION_COLUMN}) FROM {table_name(spec.name, 'features')}").fetchone()
    return row[0] if row else None


def deploy_champion(
    spec: PipelineSpec,
    registry: Registry,
    config: Config,
    who: str,
    say: Callable[[str], None] = lambda _: None,
) -> RolloutResult:
    """Materialize what the champion's rollout needs, then roll it out (see module); `say` hears
    each step. Holds the deployment's lock throughout, so a second start is refused before it builds
    anything (`DeploymentBusy`). Raises RuntimeError when something the rollout needs is missing."""
    record = registry.champion()
    if record is None:
        raise RuntimeError(f"{spec.name} has no champion to deploy: train and promote a model first")
    deploy = steps.deployment(spec, config)
    with deploy.lock("deploy start", who):
        with connection(config.warehouse, read_only=True) as con:  # closed before the rollout's wait
            refresh_snapshot(con, spec, config, say)
            tag = bento_build.bento_tag(spec, record)
            slot = serving_slot(deploy, tag)
            if slot is not None:
                return RolloutResult("already_serving", slot, tag, [f"{tag} already serves all traffic"])
            built = build_bento(con, spec, registry, record, config, say)
        say("rolling out (compatibility check, then canary when a slot already serves)")
        return steps.roll_out(spec, registry, built, who, config)


def refresh_snapshot(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, config: Config, say: Callable[[str], None]
) -> None:
    """Publish the online snapshot as of the newest features partition when the published one is
    older (running slots load it on their next request)."""
    newest = newest_features_partition(con, spec)
    if newest is None:
        raise RuntimeError(f"the warehouse holds no features for {spec.name}: ingest data first")
    published = steps.snapshot_as_of(spec, config)
    if published is None or published < newest:
        online_snapshot.publish(
            con, spec, newest, config.online / spec.name, steps.context_history_hours(spec)
        )
        say(f"online snapshot published as of {newest}")


def serving_slot(deploy: Deployment, bento: str) -> str | None:
    """The active slot when it serves `bento` alone and healthy (its server running, the proxy
    seeing it UP, no canary beside it); None otherwise."""
    state = deploy.state()
    active = state.active
    if active is None or state.bento_in(active) != bento or state.pending or state.stopping_or_stopped:
        return None
    slots = deploy.health()["slots"]
    mine, other = slots[active], slots[other_slot(active)]
    healthy = mine["process"] == "running" and str(mine["proxy_status"] or "").startswith("UP")
    return active if healthy and not mine["problem"] and not other["weight"] else None


def build_bento(
    con: duckdb.DuckDBPyConnection,
    spec: PipelineSpec,
    registry: Registry,
    record: ModelVersion,
    config: Config,
    say: Callable[[str], None],
) -> str:
    """The champion's bento (built, or the one built before) and its compatibility set; its tag."""
    model_file = registry.models / f"{record.model_sha256}.cbm"
    built = bento_build.build(spec, record, model_file, config.bentoml_home)
    say(f"bento {built.tag} for model {record.version}")
    steps.publish_compatibility(con, spec, record, registry, config)
    return str(built.tag)
