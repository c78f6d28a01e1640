"""What every data-layer asset of a pipeline shares: the partitions definition, the ingest tag,
code versions, the feature-group asset names and run metadata."""

import hashlib
import json
from typing import Any

import dagster as dg

from ct_assets.defs.data import catalog
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


def summary(rows: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any]:
    """Metadata for a run: the totals, plus a per-partition table when the run covers several."""
    metadata: dict[str, Any] = dict(totals)
    if len(rows) == 1:
        metadata.update({k: v for k, v in rows[0].items() if k not in metadata})
    metadata["partitions"] = catalog.partition_table(rows)
    return metadata
