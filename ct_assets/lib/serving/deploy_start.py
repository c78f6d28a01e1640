"""Deploying a pipeline's champion outside Dagster (`ct deploy start`), with the deploy assets' own
library steps: the online snapshot as of the newest features partition (when the published one is
older), the champion's bento (built once, then reused), its compatibility set, and the rollout.

It works on a stopped deployment (the champion starts as the first one, taking all traffic) and on
a running one (canary, then switch or rollback), and returns the rollout's result; a rolled-back
rollout is the caller's failure to report. While another change holds the deployment (a rollout, a
stop...) it is refused at once, before anything is built.
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
from ct_assets.lib.serving.rollout import RolloutResult

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
    with steps.deployment(spec, config).lock("deploy start", who):
        return _deploy(spec, registry, record, config, who, say)


def _deploy(
    spec: PipelineSpec,
    registry: Registry,
    record: ModelVersion,
    config: Config,
    who: str,
    say: Callable[[str], None],
) -> RolloutResult:
    model_file = registry.models / f"{record.model_sha256}.cbm"
    with connection(config.warehouse, read_only=True) as con:
        newest = newest_features_partition(con, spec)
        if newest is None:
            raise RuntimeError(f"the warehouse holds no features for {spec.name}: ingest data first")
        published = steps.snapshot_as_of(spec, config)
        if published is None or published < newest:
            folder = config.online / spec.name
            online_snapshot.publish(con, spec, newest, folder, steps.context_history_hours(spec))
            say(f"online snapshot published as of {newest}")
        built = bento_build.build(spec, record, model_file, config.bentoml_home)
        say(f"bento {built.tag} for model {record.version}")
        steps.publish_compatibility(con, spec, record, registry, config)
    say("rolling out (compatibility check, then canary when a slot already serves)")
    return steps.roll_out(spec, registry, str(built.tag), who, config)
