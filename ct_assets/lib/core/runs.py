"""Run states and the decisions about runs whose worker died.

Statuses are Dagster's run status names, as plain strings (the wiring turns them into
`DagsterRunStatus`). A run counts as dead when every process that wrote one of its events is gone
from this machine: such a run is marked failed and its concurrency slots are freed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ct_assets.lib.core import processes

# Queued or running: the job is busy, a new run of it waits.
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED")
# A worker process executes the run.
EXECUTING = ("STARTING", "STARTED")
# A worker may still hold the run's resources (slots).
WORKER_HELD = ("STARTING", "STARTED", "CANCELING")
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")

IsRunning = Callable[[int, float], bool]


@dataclass(frozen=True)
class Recovered:
    run_id: str
    pids: list[int]
    marked_failed: bool
    freed_slots: int

    def describe(self) -> str:
        marked = "marked failed, " if self.marked_failed else ""
        return f"run {self.run_id}: processes {self.pids} gone; {marked}{self.freed_slots} slot(s) freed"


def first_seen(events: Iterable[tuple[int | None, float]]) -> dict[int, float]:
    """Each process id among (pid, timestamp) events, with the time of its first event."""
    first: dict[int, float] = {}
    for pid, at in events:
        if pid is not None:
            first[pid] = min(first.get(pid, at), at)
    return first


def all_gone(pids: Mapping[int, float], is_running: IsRunning = processes.is_running) -> bool:
    """True when the run had processes and none of them runs any more."""
    return bool(pids) and not any(is_running(pid, started) for pid, started in pids.items())


def slot_counts(claimed_run_ids: Iterable[str]) -> dict[str, int]:
    """Concurrency slots claimed per run, from the run id of each claimed slot."""
    held: dict[str, int] = {}
    for run_id in claimed_run_ids:
        held[run_id] = held.get(run_id, 0) + 1
    return held


def failure_message(pids: Iterable[int]) -> str:
    return (
        f"the run's processes ({', '.join(map(str, sorted(pids)))}) are gone: the run worker "
        "was killed or crashed. Marked failed by ct recovery; rerun its partitions."
    )


def dead_runs(
    workers: Mapping[str, Mapping[int, float]], is_running: IsRunning = processes.is_running
) -> list[str]:
    """Runs still marked executing whose processes are all gone: they are to be marked failed."""
    return [run_id for run_id, pids in workers.items() if all_gone(pids, is_running)]


def stale_holders(
    workers: Mapping[str, Mapping[int, float]], is_running: IsRunning = processes.is_running
) -> list[str]:
    """Finished runs still holding slots whose processes are gone (or never wrote an event)."""
    return [run_id for run_id, pids in workers.items() if not pids or all_gone(pids, is_running)]


def local_storage(run_storage_class: str, run_launcher_class: str) -> bool:
    """Recovery applies to the embedded default only: the default run launcher with SQLite
    storage, where every run ran on this machine so a process id means something here."""
    return run_launcher_class == "DefaultRunLauncher" and "sqlite" in run_storage_class.lower()


def report(recovered: list[Recovered]) -> str:
    """What a recovery did, one line per run."""
    return "\n".join(r.describe() for r in recovered) or "no run with a dead worker"
