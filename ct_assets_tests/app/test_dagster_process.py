"""Supervising `dagster dev`, shown on small stand-in process groups (`sleep`, `sh`, a tiny Python
supervisor) put where `start()` puts dagster dev: stopping ends every process of the group,
escalating from SIGINT to SIGTERM when SIGINT is ignored, and waiting on a process that exited
reports it with its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ct_assets.app.dagster_process import DagsterDev
from ct_assets.lib.core.processes import is_running

# A leader that ignores SIGINT, with a child that stops on it: prints the child's pid, then how it ended.
SUPERVISOR = """
import signal, subprocess, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
print(child.pid, flush=True)
print(child.wait(), flush=True)
time.sleep(30)
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DagsterDev]:
    """A supervisor whose process, if a test leaves one, is killed with its group afterwards."""
    supervisor = DagsterDev(tmp_path / "workspace.yaml", tmp_path / "dagster", 3999, tmp_path / "dev.log")
    yield supervisor
    if supervisor.process is not None:
        if _group_exists(supervisor.process.pid):
            os.killpg(supervisor.process.pid, signal.SIGKILL)
        supervisor.process.wait(timeout=10)


def _start_group(
    dev: DagsterDev, command: list[str], prepare: Callable[[], None], **popen: object
) -> subprocess.Popen:
    """`command` as the leader of its own session, as `start()` runs dagster dev."""
    dev.process = subprocess.Popen(command, start_new_session=True, preexec_fn=prepare, **popen)  # type: ignore[call-overload]
    return dev.process


def test_it_serves_on_loopback_with_its_own_dagster_home(
    dev: DagsterDev, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CT_TEST_MARKER", "kept")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "another"))
    assert dev.url == "http://127.0.0.1:3999"
    environment = dev.environment()
    assert environment["DAGSTER_HOME"] == str(tmp_path / "dagster"), "its own instance, not the caller's"
    assert environment["CT_TEST_MARKER"] == "kept", "the rest of the environment is passed on"
    assert isinstance(dev.workspace, Path) and isinstance(dev.log_path, Path)


def test_relative_locations_reach_dagster_dev_as_absolute_paths(
    dev: DagsterDev, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dagster dev runs in the Dagster home, so a location relative to the caller's folder would
    resolve elsewhere in its code server."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CT_HOME", "home")
    monkeypatch.setenv("CT_PIPELINES_DIR", os.pathsep.join(["specs", str(tmp_path / "more")]))
    monkeypatch.setenv("CT_WAREHOUSE", "")
    environment = dev.environment()
    assert environment["CT_HOME"] == str(tmp_path / "home")
    folders = [str(tmp_path / "specs"), str(tmp_path / "more")]
    assert environment["CT_PIPELINES_DIR"] == os.pathsep.join(folders)
    assert environment["CT_WAREHOUSE"] == "", "an empty variable means the default, and stays empty"


def test_stopping_before_starting_does_nothing(dev: DagsterDev) -> None:
    dev.stop(timeout=0.1)
    assert dev.process is None


def test_sigint_is_enough_for_a_group_that_stops_on_it(dev: DagsterDev) -> None:
    leader = _start_group(dev, ["sleep", "30"], _default_sigint)
    began = time.monotonic()
    dev.stop(timeout=20)
    assert time.monotonic() - began < 5, "no wait for the SIGTERM step"
    assert leader.returncode == -signal.SIGINT
    assert dev.process is None and not _group_exists(leader.pid)


def test_a_group_that_ignores_sigint_is_terminated_after_the_timeout(dev: DagsterDev) -> None:
    leader = _start_group(dev, ["sleep", "30"], _ignore_sigint)
    began = time.monotonic()
    dev.stop(timeout=0.5)
    elapsed = time.monotonic() - began
    assert leader.returncode == -signal.SIGTERM, "SIGINT was ignored, SIGTERM ended it"
    assert 0.5 <= elapsed < 5
    assert not _group_exists(leader.pid)


def test_sigint_reaches_every_process_of_the_group_not_only_its_leader(dev: DagsterDev) -> None:
    # The leader ignores SIGINT and reports how its child ended; SIGTERM ends the leader.
    leader = _start_group(
        dev, [sys.executable, "-c", SUPERVISOR], _default_sigint, stdout=subprocess.PIPE, text=True
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    assert is_running(child)
    dev.stop(timeout=0.5)
    child_ended_by = leader.stdout.read().strip()
    leader.stdout.close()
    assert child_ended_by == str(-signal.SIGINT), "the child got the group's SIGINT"
    assert leader.returncode == -signal.SIGTERM
    assert not is_running(child) and not _group_exists(leader.pid)


def test_waiting_for_a_process_that_exited_names_its_exit_code_and_log(dev: DagsterDev) -> None:
    with pytest.raises(AssertionError, match=r"start\(\) first"):
        dev.wait_ready(timeout=1)
    leader = _start_group(dev, ["sh", "-c", "exit 3"], _default_sigint)
    leader.wait(timeout=10)
    began = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        dev.wait_ready(timeout=30)
    assert time.monotonic() - began < 5, "an exited process is reported at once, not after the timeout"
    assert str(raised.value) == f"dagster dev (log: {dev.log_path}) exited with 3"
