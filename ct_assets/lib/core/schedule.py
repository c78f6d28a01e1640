"""When a pipeline retrains on its schedule: does its cron fire within a partition's window?"""

from __future__ import annotations

from datetime import datetime

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec


def retrain_due(spec: PipelineSpec, partition_key: str) -> bool:
    """True when the spec's `retrain_cron` fires inside the partition's event-time window."""
    from croniter import croniter

    if spec.training.retrain_cron is None:
        return False
    start, end = partition_window(spec.partitions, partition_key)
    cron = spec.training.retrain_cron
    return croniter.match(cron, start) or croniter(cron, start).get_next(datetime) < end
