"""A partition's logged predictions: `read_partition` gives every prediction of a pipeline whose
event time falls in the partition, as the frame the ingesting step stores, so live performance can
join them with the labels when those land. Each file is filtered vectorized, in Arrow."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.core.partitions import partition_window
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.prediction_log import log_files, read_table, time_texts
from ct_assets.lib.serving.prediction_log_schema import COLUMNS, timestamp_type

if TYPE_CHECKING:
    import pandas as pd


def _partition_rows_arrow(path: Path, start: datetime, end: datetime) -> pd.DataFrame | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(path)
    if table is None or not table.num_rows:
        return None
    when = table.column("event_time")
    inside = pc.and_(
        pc.greater_equal(when, pa.scalar(start, timestamp_type())),
        pc.less(when, pa.scalar(end, timestamp_type())),
    )
    table = table.filter(pc.fill_null(inside, False)).select(COLUMNS)
    if not table.num_rows:
        return None
    frame = table.drop_columns(["time", "event_time"]).to_pandas()
    frame["time"] = time_texts(table.column("time").combine_chunks(), iso=True)
    frame["event_time"] = time_texts(table.column("event_time").combine_chunks(), iso=False)
    return frame[COLUMNS]


def read_partition(folder: Path, spec: PipelineSpec, partition_key: str) -> pd.DataFrame:
    """Every logged prediction of the pipeline whose event time is inside the partition (request
    and event times as text, as `prediction_log.requests_from_table` gives them): the ingesting
    step's way into the log."""
    import pandas as pd

    start, end = partition_window(spec.partitions, partition_key)
    frames = [pd.DataFrame(columns=COLUMNS)]
    for path in log_files(Path(folder) / spec.name):
        if (frame := _partition_rows_arrow(path, start, end)) is not None:
            frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    # explicit types: a partition with no predictions must not create the table with NULL columns
    numeric = {"score": "float64", "decision": "boolean", "latency_ms": "float64"}
    return frame.astype({**{c: "string" for c in COLUMNS if c not in numeric}, **numeric})
