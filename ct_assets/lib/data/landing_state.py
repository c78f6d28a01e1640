"""The landing sensor's state: which landed partitions to ingest, and in which runs.

The cursor remembers each partition's files fingerprint (`seen`), the retries asked for a landed
partition whose ingest was lost (`retries`), the context files' fingerprint (`context`) and the
landing entries whose name is not a partition key (`misnamed`, so each is named once). A
partition is ingested again when its files change, and asked again (up to a limit) while it is
landed but not ingested. Consecutive partitions go together in one range run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.data.landing_names import Misnamed


@dataclass(frozen=True)
class PartitionRun:
    """One ingest run: a single partition, or a range of consecutive ones."""

    first: str
    last: str
    run_key: str

    @property
    def single(self) -> bool:
        return self.first == self.last


def parse(cursor: str | None) -> dict[str, Any]:
    return json.loads(cursor or "{}")


def dump(cursor: dict[str, Any]) -> str:
    return json.dumps(cursor)


def fingerprint(paths: Iterable[Path]) -> str:
    """The files' content hashes, shortened: changes when any file changes."""
    return fingerprint_of(sha256_of(path) for path in paths)


def fingerprint_of(sha256s: Iterable[str]) -> str:
    """The fingerprint of files with these content hashes (in the same order)."""
    return ",".join(digest[:16] for digest in sha256s)


def context_changed(cursor: dict[str, Any], context_fingerprint: str) -> str | None:
    """The context load's run key when the context files changed since the cursor's last look
    (and remember them in the cursor), else None."""
    if cursor.get("context") == context_fingerprint:
        return None
    cursor["context"] = context_fingerprint
    return f"context:{context_fingerprint}"


def in_order(landed: Iterable[str], ordered: Sequence[str]) -> list[str]:
    """Landed partition keys that the partitions definition knows, in its order."""
    position = {key: index for index, key in enumerate(ordered)}
    return sorted((key for key in landed if key in position), key=position.__getitem__)


def newly_misnamed(cursor: dict[str, Any], found: list[Misnamed]) -> list[Misnamed]:
    """The misnamed landing entries not named before (the cursor then holds all of `found`): an
    entry stays quiet while it stays, and is named again if it goes and comes back."""
    before = set(cursor.get("misnamed", []))
    names = sorted(entry.path.name for entry in found)
    if names or "misnamed" in cursor:
        cursor["misnamed"] = names
    return [entry for entry in found if entry.path.name not in before]


def pending(
    cursor: dict[str, Any],
    landed: list[tuple[str, str]],
    ingested: set[str],
    max_retries: int,
    ingested_from: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """(key, run-key part) of each landed (key, fingerprint) to ingest now: new or changed files,
    or a retry while the partition is landed but not ingested. Updates `seen` and `retries`.

    `ingested_from` holds, for partitions the cursor has not seen yet, the fingerprint of the files
    their last ingest read (by any run: the sensor's, a backfill's, the CLI's): the same files are
    only marked seen, not ingested again."""
    seen: dict[str, str] = cursor.setdefault("seen", {})
    retries: dict[str, int] = cursor.setdefault("retries", {})
    found: list[tuple[str, str]] = []
    for key, files in landed:
        if key not in seen and key in ingested and (ingested_from or {}).get(key) == files:
            seen[key] = files
            continue
        part = f"{key}:{files}"
        if seen.get(key) == files:
            if key in ingested or retries.get(key, 0) >= max_retries:
                continue
            retries[key] = retries.get(key, 0) + 1
            part += f":retry{retries[key]}"
        seen[key] = files
        found.append((key, part))
    return found


def contiguous(items: list[tuple[str, str]], ordered: Sequence[str]) -> list[list[tuple[str, str]]]:
    """Split (key, run-key part) pairs into runs of consecutive partitions."""
    position = {key: index for index, key in enumerate(ordered)}
    runs: list[list[tuple[str, str]]] = []
    for item in items:
        if runs and position[item[0]] == position[runs[-1][-1][0]] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def digest(parts: list[str]) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def partition_runs(items: list[tuple[str, str]], ordered: Sequence[str]) -> list[PartitionRun]:
    """The ingest runs for the pending partitions: one per stretch of consecutive partitions."""
    built = []
    for run in contiguous(items, ordered):
        first, last = run[0][0], run[-1][0]
        run_key = run[0][1] if len(run) == 1 else f"{first}...{last}:{digest([p for _, p in run])}"
        built.append(PartitionRun(first, last, run_key))
    return built
