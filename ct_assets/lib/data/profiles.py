"""whylogs profiles of feature partitions: built in parallel chunks, merged, stored as bytes.

Profiles are mergeable sketches, so a large partition is split into chunks profiled in separate
processes and merged, and a window profile (a model's reference) is the merge of its partitions.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from whylogs.core import DatasetProfileView

PARALLEL_FROM_ROWS = 200_000


def prepare(frame: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    """Categoricals as text and numerics as floats, so every profile types a column the same way."""
    import pandas as pd

    prepared = pd.DataFrame(index=frame.index)
    for column in categorical:
        # pandas' own string dtype keeps missing values missing and is far cheaper for whylogs
        # than Python objects (measured in bench/monitoring.py)
        prepared[column] = frame[column].astype("str").where(frame[column].notna(), None).astype("str")
    for column in numeric:
        prepared[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return prepared


def _profile_chunk(chunk: pd.DataFrame) -> bytes:
    import whylogs as why

    return why.log(chunk).view().serialize()


def profile(frame: pd.DataFrame, workers: int | None = None) -> DatasetProfileView:
    """Profile a prepared frame; large frames are profiled in chunks across processes and merged."""
    import whylogs as why

    # On two cores the process pool cost more than it saved (bench/monitoring.py): one worker
    # unless the machine has cores to spare.
    workers = workers or max(1, (os.cpu_count() or 1) - 2)
    if len(frame) < PARALLEL_FROM_ROWS or workers == 1:
        return why.log(frame).view()
    size = -(-len(frame) // workers)
    chunks = [frame.iloc[i : i + size] for i in range(0, len(frame), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        views = [deserialize(blob) for blob in pool.map(_profile_chunk, chunks)]
    return merge(views)


def merge(views: list[DatasetProfileView]) -> DatasetProfileView:
    if not views:
        raise ValueError("no profiles to merge")
    merged = views[0]
    for view in views[1:]:
        merged = merged.merge(view)
    return merged


def deserialize(blob: bytes) -> DatasetProfileView:
    from whylogs.core import DatasetProfileView

    return DatasetProfileView.deserialize(blob)


class ProfileFiles:
    """Profiles on disk: `<root>/<pipeline>/<kind>/<key>.bin`, written atomically."""

    def __init__(self, root: Path, pipeline: str) -> None:
        self.folder = Path(root) / pipeline

    def path(self, kind: str, key: str) -> Path:
        return self.folder / kind / f"{key}.bin"

    def write(self, kind: str, key: str, view: DatasetProfileView) -> Path:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(view.serialize())
        temporary.replace(path)
        return path

    def read(self, kind: str, key: str) -> DatasetProfileView:
        path = self.path(kind, key)
        if not path.exists():
            raise FileNotFoundError(f"no {kind} profile for {key} at {path}")
        return deserialize(path.read_bytes())

    def exists(self, kind: str, key: str) -> bool:
        return self.path(kind, key).exists()

    def window(self, kind: str, keys: list[str]) -> DatasetProfileView:
        """The merge of the partitions' profiles (a reference window)."""
        return merge([self.read(kind, key) for key in keys])
