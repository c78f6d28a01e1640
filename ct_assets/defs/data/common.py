"""What every data-layer asset of a pipeline shares: the partitions definition, the ingest tag,
code versions, the feature-group asset names, run metadata, and per-partition outcomes.

A run may cover a range of partitions (`BackfillPolicy.single_run`). Each partition is written in
its own transaction; one that fails writes nothing and does not stop the others. Every partition
that landed gets exactly one materialization with its own figures; when any partition failed, the
step then fails with one line per failed partition, so Dagster records exactly the partitions the
warehouse holds.
"""

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import dagster as dg

from ct_assets.lib.core import names
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.features import Group

ENGINE_VERSION = "1"
# Every partitioned asset of a pipeline carries this tag, so one selection backfills them all:
# --select 'tag:ct/stage=ingest and group:<pipeline>'
INGEST_TAGS = {"ct/stage": "ingest"}
WARN = dg.AssetCheckSeverity.WARN


def partitions_def(spec: PipelineSpec) -> dg.TimeWindowPartitionsDefinition:
    p = spec.partitions
    kwargs: dict[str, Any] = {"start_date": p.start.isoformat(), "timezone": p.timezone}
    if p.end is not None:
        kwargs["end_date"] = p.end.isoformat()
    kind = {
        "daily": dg.DailyPartitionsDefinition,
        "weekly": dg.WeeklyPartitionsDefinition,
        "monthly": dg.MonthlyPartitionsDefinition,
    }[p.grain]
    return kind(**kwargs)


def version(*parts: Any) -> str:
    payload = json.dumps([ENGINE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def group_asset_name(group: Group) -> str:
    return names.group_asset(group.name)


T = TypeVar("T")


def each_partition(
    context: dg.AssetExecutionContext, step: Callable[[str], T]
) -> tuple[dict[str, T], dict[str, str]]:
    """Run `step` for every partition of the run: (reports of those that landed, reasons of the
    others). A failing partition's transaction rolled back, so it left nothing behind."""
    done: dict[str, T] = {}
    failed: dict[str, str] = {}
    for partition_key in context.partition_keys:
        try:
            done[partition_key] = step(partition_key)
        except Exception as err:  # one partition's problem: the others still land
            failed[partition_key] = str(err).splitlines()[0] if str(err) else type(err).__name__
            context.log.error(f"partition {partition_key} failed: {failed[partition_key]}")
    return done, failed


def materializations(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    per_partition: Mapping[str, dict[str, Any]],
    complete: bool,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization]:
    """The asset's materializations: one per landed partition, with that partition's own figures.

    When every partition landed, the step's output is the range's one result, and each partition's
    figures are attached to its own event (`add_asset_metadata` per partition key), so Dagster
    records one materialization per partition. When some failed, only the landed partitions are
    recorded (the step then fails naming the others).
    """
    if complete:
        for partition_key, metadata in per_partition.items():
            context.add_asset_metadata(metadata, asset_key=key, partition_key=partition_key)
        yield dg.MaterializeResult(asset_key=key)
        return
    for partition_key, metadata in per_partition.items():
        yield dg.AssetMaterialization(asset_key=key, partition=partition_key, metadata=metadata)


def fail_partitions(asset: str, failed: dict[str, str], landed: int) -> None:
    """Fail the step naming every partition that did not land and why."""
    if failed:
        raise dg.Failure(
            description=f"{asset}: {len(failed)} partition(s) failed, {landed} landed:\n"
            + "\n".join(f"- {k}: {reason}" for k, reason in failed.items()),
            metadata={"failed_partitions": dg.MetadataValue.json(failed)},
        )
