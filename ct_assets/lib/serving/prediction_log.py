"""Reading the serving layer's prediction log back: its files in writing order (`log_files`), one
file's rows (`read_table`, which leaves out a torn last batch), and those rows as requests
(`read_requests`, `requests_from_table`) or as flat predictions (`predictions`), with request and
event times as text.

The files are written by `prediction_log_writer` (one Arrow IPC stream per day and process, with
the columns of `prediction_log_schema`); `prediction_log_partition` ingests them per partition.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.serving.prediction_log_schema import (
    FEATURE_PREFIX,
    PREDICTION_FIELDS,
    REQUEST_FIELDS,
    SEGMENT_PREFIX,
    SUFFIX,
    timestamp_type,
)

if TYPE_CHECKING:
    import pyarrow as pa


def log_files(folder: Path, slot: str | None = None) -> list[Path]:
    """Every log file under `folder`, optionally only one slot's, in writing order:
    by folder, then file, then segment (`blue-7.arrows` before `blue-7.1.arrows`)."""

    def order(path: Path) -> tuple[Path, str, int]:
        base, _, segment = path.stem.rpartition(".")
        return (path.parent, base, int(segment)) if segment.isdigit() else (path.parent, path.stem, 0)

    pattern = f"{slot}-*" if slot else "*"
    found = Path(folder).rglob(pattern)
    return sorted((p for p in found if p.suffix == SUFFIX and p.is_file()), key=order)


def read_table(path: Path) -> pa.Table | None:
    """An Arrow log file's rows; a torn last batch (a writer killed mid-write, or one still writing)
    is left out. None for a file that holds no complete schema yet."""
    import pyarrow as pa

    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except pa.ArrowInvalid:
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except (StopIteration, pa.ArrowInvalid, OSError):  # the end, or a torn tail
            break
    return pa.Table.from_batches(batches, reader.schema)


def time_texts(values: pa.Array, iso: bool) -> list[str | None]:
    """Timestamps as text: `datetime.isoformat()` for request times, `str()` for event times;
    formatted once per distinct value (they repeat within a request)."""
    encoded = values.dictionary_encode()
    texts = [
        None if t is None else (t.isoformat() if iso else str(t)) for t in encoded.dictionary.to_pylist()
    ]
    return [None if i is None else texts[i] for i in encoded.indices.to_pylist()]


def requests_from_table(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow log rows as requests: the request fields once, one list per per-prediction field, and
    `segments` and `features` as one list per name; a request's rows are consecutive."""
    if not table.num_rows:
        return []
    names = table.column_names
    plain = {name: table.column(name).to_pylist() for name in names if name not in ("time", "event_time")}
    plain["time"] = time_texts(table.column("time").combine_chunks(), iso=True)
    plain["event_time"] = time_texts(table.column("event_time").combine_chunks(), iso=False)
    ids, times = plain["request_id"], plain["time"]  # two requests may share an id, not a time too
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1] or times[i] != times[i - 1]]
    requests = []
    for start, end in zip(starts, [*starts[1:], len(ids)], strict=True):
        request: dict[str, Any] = {field: plain[field][start] for field in REQUEST_FIELDS}
        request.update({field: plain[field][start:end] for field in PREDICTION_FIELDS})
        request["segments"] = {
            n.removeprefix(SEGMENT_PREFIX): plain[n][start:end] for n in names if n.startswith(SEGMENT_PREFIX)
        }
        request["features"] = {
            n.removeprefix(FEATURE_PREFIX): plain[n][start:end] for n in names if n.startswith(FEATURE_PREFIX)
        }
        requests.append(request)
    return requests


def read_requests(
    path: Path, request_id: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    """A log file's requests (the shape of `requests_from_table`): all, those with one request id,
    or those logged at or after `since` (ISO 8601 with a zone); a torn tail (a writer killed
    mid-write) is skipped. Only the rows asked for are turned into Python objects."""
    after = None if since is None else datetime.fromisoformat(since)
    import pyarrow as pa
    import pyarrow.compute as pc

    table = read_table(path)
    if table is None:
        return []
    if request_id is not None:
        table = table.filter(pc.equal(table.column("request_id"), request_id))
    if after is not None:
        table = table.filter(pc.greater_equal(table.column("time"), pa.scalar(after, timestamp_type())))
    return requests_from_table(table)


def predictions(request: dict[str, Any]) -> list[dict[str, Any]]:
    """A logged request's predictions, one flat record each (request fields repeated)."""
    common = {f: request.get(f) for f in REQUEST_FIELDS}
    segments, features = request.get("segments") or {}, request.get("features") or {}
    return [
        {
            **common,
            **{f: request[f][i] for f in PREDICTION_FIELDS},
            "segments": {k: v[i] for k, v in segments.items()},
            "features": {k: v[i] for k, v in features.items()},
        }
        for i in range(len(request["entity_id"]))
    ]
