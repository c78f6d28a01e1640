"""Ingesting the serving layer's prediction log: the predictions whose event time falls in a
partition, so live performance can join them with the labels when those land."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.partitions import partition_window
from ct_assets.lib.spec import PipelineSpec

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "request_id",
    "time",
    "model_version",
    "slot",
    "entity_id",
    "score",
    "decision",
    "event_time",
    "latency_ms",
]


def read_partition(folder: Path, spec: PipelineSpec, partition_key: str) -> pd.DataFrame:
    """Every logged prediction of the pipeline whose event time is inside the partition."""
    from datetime import datetime

    import pandas as pd

    start, end = partition_window(spec.partitions, partition_key)
    records = []
    for path in sorted((Path(folder) / spec.name).rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            when = record.get("event_time")
            if when and start <= datetime.fromisoformat(when) < end:
                records.append({column: record.get(column) for column in COLUMNS})
    frame = pd.DataFrame(records, columns=COLUMNS)
    return frame.astype({"score": "float64", "decision": "boolean", "latency_ms": "float64"})
