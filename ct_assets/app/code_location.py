"""The code location as the application layer sees it: the Definitions of `ct_assets.definitions`,
a pipeline's assets and resources from them, and its sensors evaluated on demand."""

from __future__ import annotations

import dagster as dg


def definitions() -> dg.Definitions:
    """Everything the code location defines, built from the environment as it is now."""
    from ct_assets.definitions import defs  # the whole code location: built only when asked for

    return defs()


def pipeline_assets(pipeline: str, select: frozenset[str] | None = None) -> list[dg.AssetsDefinition]:
    """The pipeline's assets (those producing one of `select`'s asset names, when given)."""
    found = []
    for asset in definitions().assets or []:
        if not isinstance(asset, dg.AssetsDefinition):
            continue
        keys = [key for key in asset.keys if key.path[0] == pipeline]
        if keys and (select is None or any(key.path[-1] in select for key in keys)):
            found.append(asset)
    return found


def resources() -> dict[str, object]:
    return dict(definitions().resources or {})


def recover_dead_runs(instance: dg.DagsterInstance) -> str:
    """One tick of the `dead_run_recovery` sensor: runs whose worker died are marked failed and
    their concurrency slots freed. Returns what it did, one line per run."""
    sensor = definitions().resolve_sensor_def("dead_run_recovery")
    result = sensor(dg.build_sensor_context(instance=instance))
    return str(result.skip_message)
