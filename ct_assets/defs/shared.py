"""Helpers every wiring module uses: a pipeline's asset keys and run-status filters."""

import dagster as dg

from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec


def asset_key(spec: PipelineSpec, asset: str) -> dg.AssetKey:
    """The key of one of the pipeline's assets: `<pipeline>/<asset>`."""
    return dg.AssetKey(names.asset_path(spec.name, asset))


def run_statuses(statuses: tuple[str, ...]) -> list[dg.DagsterRunStatus]:
    """Dagster's run statuses for the status names in `ct_assets.lib.core.runs`."""
    return [dg.DagsterRunStatus(status) for status in statuses]
