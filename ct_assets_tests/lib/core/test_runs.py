"""Run states and the dead-run decisions, with plain process tables."""

import os
import time

from ct_assets.lib.core import runs
from ct_assets.lib.core.runs import Recovered


def _running(alive: set[int]):
    return lambda pid, started: pid in alive


def test_first_seen_keeps_each_process_first_event() -> None:
    events = [(10, 5.0), (None, 1.0), (10, 3.0), (11, 4.0)]
    assert runs.first_seen(events) == {10: 3.0, 11: 4.0}


def test_a_run_is_dead_only_when_it_had_processes_and_all_are_gone() -> None:
    workers = {"a": {1: 0.0, 2: 0.0}, "b": {3: 0.0}, "c": {}}
    assert runs.dead_runs(workers, _running({2})) == ["b"]
    assert runs.dead_runs(workers, _running(set())) == ["a", "b"]


def test_finished_holders_without_events_free_their_slots() -> None:
    workers = {"a": {}, "b": {5: 0.0}, "c": {6: 0.0}}
    assert runs.stale_holders(workers, _running({6})) == ["a", "b"]


def test_this_process_counts_as_running() -> None:
    assert not runs.all_gone({os.getpid(): time.time()})


def test_slot_counts_and_storage_rule() -> None:
    assert runs.slot_counts(["a", "b", "a"]) == {"a": 2, "b": 1}
    assert runs.local_storage("SqliteRunStorage", "DefaultRunLauncher")
    assert not runs.local_storage("PostgresRunStorage", "DefaultRunLauncher")
    assert not runs.local_storage("SqliteRunStorage", "K8sRunLauncher")


def test_report_names_each_run_and_its_freed_slots() -> None:
    assert runs.report([]) == "no run with a dead worker"
    text = runs.report([Recovered("abcdef123", [7], True, 1), Recovered("xyz", [], False, 2)])
    assert text.splitlines() == [
        "run abcdef123: processes [7] gone; marked failed, 1 slot(s) freed",
        "run xyz: processes [] gone; 2 slot(s) freed",
    ]
    assert "7" in runs.failure_message([7]) and "rerun" in runs.failure_message([7])


def test_in_flight_includes_queued_runs_and_executing_does_not() -> None:
    assert "QUEUED" in runs.IN_FLIGHT and "QUEUED" not in runs.EXECUTING
    assert set(runs.EXECUTING) <= set(runs.WORKER_HELD)
