"""Training sets: a trailing window of feature partitions, split by time, with a content hash.

The most recent partitions are the holdout, the ones before them the validation split, the rest
the training split: never a random split, so evaluation sees the future the way serving will.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, quote, table_exists, table_name

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

SPLITS = ("train", "validation", "holdout")


SPLIT_COLUMN = "_split"  # each frozen row's split: train, validation or holdout


class TrainingDataError(ValueError):
    """A training window that cannot give a trustworthy model; says what is wrong."""


@dataclass(frozen=True)
class TrainingSet:
    """A frozen training set: rows with a `_split` column, and where they came from."""

    frame: pd.DataFrame
    partitions: dict[str, list[str]]  # split -> partition keys
    version: str

    def split(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame[SPLIT_COLUMN] == name]


def available_partitions(con: duckdb.DuckDBPyConnection, spec: PipelineSpec) -> list[str]:
    """Feature partitions present in the warehouse, oldest first."""
    if not table_exists(con, spec.name, "features"):
        return []
    rows = con.execute(
        f"SELECT DISTINCT {PARTITION_COLUMN} FROM {table_name(spec.name, 'features')} ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def window(spec: PipelineSpec, available: list[str], as_of: str | None) -> list[str]:
    """The trailing window of available partitions ending at `as_of` (default: the latest)."""
    eligible = [k for k in available if as_of is None or k <= as_of]
    chosen = eligible[-spec.training.window_partitions :]
    needed = spec.training.validation_partitions + spec.training.holdout_partitions + 1
    if len(chosen) < needed:
        raise TrainingDataError(
            f"{spec.name}: {len(chosen)} feature partitions up to {as_of or 'now'}; the split needs "
            f"at least {needed} (train, {spec.training.validation_partitions} validation, "
            f"{spec.training.holdout_partitions} holdout)"
        )
    return chosen


def assign_splits(spec: PipelineSpec, keys: list[str]) -> dict[str, list[str]]:
    holdout = spec.training.holdout_partitions
    validation = spec.training.validation_partitions
    return {
        "train": keys[: -(holdout + validation)],
        "validation": keys[-(holdout + validation) : -holdout],
        "holdout": keys[-holdout:],
    }


def content_version(frame: pd.DataFrame) -> str:
    """A hash of the rows and columns, independent of row order."""
    import numpy as np
    import pandas as pd

    ordered = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True)
    row_hashes = pd.util.hash_pandas_object(ordered, index=False).to_numpy()
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in ordered.dtypes.items()]).encode())
    digest.update(np.sort(row_hashes).tobytes())
    return digest.hexdigest()[:16]


def build_training_set(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, as_of: str | None = None
) -> TrainingSet:
    """Read the window's feature rows, split them by time, and check they can train a model."""
    keys = window(spec, available_partitions(con, spec), as_of)
    splits = assign_splits(spec, keys)
    cases = " ".join(
        f"WHEN {PARTITION_COLUMN} IN ({', '.join(key_literal(k) for k in split_keys)}) THEN '{name}'"
        for name, split_keys in splits.items()
    )
    frame = con.execute(
        f"SELECT CASE {cases} END AS {SPLIT_COLUMN}, * FROM {table_name(spec.name, 'features')} "
        f"WHERE {PARTITION_COLUMN} IN ({', '.join(key_literal(k) for k in keys)}) "
        f"ORDER BY {quote(spec.timestamp_column)}, {quote(spec.entity_id)}"
    ).df()
    check_trainable(spec, frame)
    return TrainingSet(frame=frame, partitions=splits, version=content_version(frame))


def check_trainable(spec: PipelineSpec, frame: pd.DataFrame) -> None:
    """Refuse windows that would give a meaningless model or evaluation."""
    label = spec.label.column
    problems = []
    for name in SPLITS:
        part = frame[frame[SPLIT_COLUMN] == name]
        if part.empty:
            problems.append(f"the {name} split is empty")
            continue
        classes = part[label].dropna().astype(bool).unique()
        if len(classes) < 2:
            problems.append(
                f"the {name} split has one class only ({label}={classes[0] if len(classes) else 'none'})"
            )
    train_rows = int((frame[SPLIT_COLUMN] == "train").sum())
    if train_rows < spec.training.min_rows:
        problems.append(
            f"the train split has {train_rows} rows, fewer than min_rows {spec.training.min_rows}"
        )
    if problems:
        raise TrainingDataError(f"{spec.name}: cannot train: " + "; ".join(problems))
