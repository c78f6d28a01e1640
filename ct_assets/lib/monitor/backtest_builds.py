"""What each partition of a backtest's own warehouse was built from, and which partitions must be
built again.

A partition is rebuilt when it is new, when its landing files changed (their sha256, as the ingest
records them in `source_sha256`), when the spec's data sections or SQL files changed, or when the
context files changed; otherwise it is reused. The table `<pipeline>.backtest_builds` keeps, per
partition, the fingerprints it was built from; a partition built without a row there is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.core.warehouse import (
    PARTITION_COLUMN,
    replace_partition,
    sql_string,
    table_exists,
    table_name,
)
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.data.landing_state import fingerprint

if TYPE_CHECKING:
    import duckdb

BUILDS = "backtest_builds"
# The spec's sections that the data steps read (ingest, validation, feature groups, the feature
# table); a change elsewhere (training, gate, monitoring, serving...) leaves the features as they are.
DATA_SECTIONS = {
    "source",
    "partitions",
    "timestamp_column",
    "entity_id",
    "label",
    "columns",
    "post_event_columns",
    "context_tables",
    "feature_groups",
    "segments",
    "quality",
}
NEW = "new"
FILES_CHANGED = "landing files changed"
DEFINITION_CHANGED = "spec or feature SQL changed"
CONTEXT_CHANGED = "context files changed"
UNRECORDED = "no record of what it was built from"


@dataclass(frozen=True)
class Build:
    """What a partition is built from: fingerprints of its landing files, of the spec's data
    sections with the texts of its SQL files, and of the context files."""

    files: str
    definition: str
    context: str


def definition_hash(spec: PipelineSpec) -> str:
    """A hash of the spec's data sections and of the texts of the SQL files they name."""
    sections = spec.model_dump(mode="json", include=DATA_SECTIONS)
    sql = sorted({spec.label.sql, *(g.sql for g in spec.feature_groups.values())})
    payload = json.dumps(
        {"spec": sections, "sql": {path: spec.sql_text(path) for path in sql}}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def current_builds(spec: PipelineSpec, landing: Path, keys: list[str]) -> dict[str, Build]:
    """What each partition would be built from now."""
    definition = definition_hash(spec)
    context = fingerprint(context_file(landing, spec.name, t) for t in sorted(spec.context_tables))
    return {
        key: Build(fingerprint(partition_files(landing, spec.name, key)), definition, context) for key in keys
    }


def recorded_builds(con: duckdb.DuckDBPyConnection, spec: PipelineSpec) -> dict[str, Build]:
    if not table_exists(con, spec.name, BUILDS):
        return {}
    rows = con.execute(
        f"SELECT {PARTITION_COLUMN}, files, definition, context FROM {table_name(spec.name, BUILDS)}"
    ).fetchall()
    return {row[0]: Build(row[1], row[2], row[3]) for row in rows}


def stale(wanted: dict[str, Build], recorded: dict[str, Build], built: set[str]) -> dict[str, str]:
    """The partitions to build, each with why: the rest of `wanted` is reused as built."""
    reasons: dict[str, str] = {}
    for key, build in wanted.items():
        before = recorded.get(key)
        if before is None:
            reasons[key] = UNRECORDED if key in built else NEW
            continue
        changed = [
            why
            for why, differs in (
                (FILES_CHANGED, before.files != build.files),
                (DEFINITION_CHANGED, before.definition != build.definition),
                (CONTEXT_CHANGED, before.context != build.context),
            )
            if differs
        ]
        if changed:
            reasons[key] = ", ".join(changed)
    return reasons


def record(con: duckdb.DuckDBPyConnection, spec: PipelineSpec, key: str, build: Build) -> None:
    """Remember what the partition was built from (after it is built: a build cut short leaves
    no row, and the next run builds the partition again)."""
    replace_partition(
        con,
        spec.name,
        BUILDS,
        key,
        f"SELECT {sql_string(build.files)} AS files, {sql_string(build.definition)} AS definition, "
        f"{sql_string(build.context)} AS context",
    )


def describe(rebuilt: dict[str, str], total: int) -> str:
    """One line: how many partitions were built and why, and how many were reused."""
    if not rebuilt:
        return f"features: all {total} partitions reused from the backtest warehouse"
    why = ", ".join(f"{count} {reason}" for reason, count in Counter(rebuilt.values()).most_common())
    return f"features: {len(rebuilt)} of {total} partitions built ({why}), {total - len(rebuilt)} reused"
