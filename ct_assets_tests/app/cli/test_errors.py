"""Every `ct` error is one clear line on stderr with a non-zero exit, and `--debug` shows the
traceback: each case is a real `ct` process on a fresh home (a busy port is a real bound socket,
a running daemon a real `dagster-daemon`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ct_assets.app.cli.common import running_daemons
from ct_assets.lib.core import settings

CT = str(Path(sys.executable).parent / "ct")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    return {**env, "CT_HOME": str(home), **extra}


def ct(home: Path, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CT, *args], env=_env(home, **extra), capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _processes_with_home(home: Path) -> list[int]:
    """Processes of this user whose environment carries this CT_HOME (anything `ct` left behind)."""
    wanted = f"CT_HOME={home}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_replay_with_the_end_before_the_start(tmp_path: Path) -> None:
    done = ct(tmp_path, "replay", "--start", "2013-01-05", "--end", "2013-01-01")
    assert_one_line_error(done, "--end 2013-01-01 is before --start 2013-01-05")


def test_a_date_that_is_not_a_date(tmp_path: Path) -> None:
    done = ct(tmp_path, "land", "--start", "2013-02-30", "--end", "2013-03-01")
    assert_one_line_error(done, "'2013-02-30' is not a date")
    assert done.returncode == 2


def test_an_unknown_pipeline(tmp_path: Path) -> None:
    done = ct(tmp_path, "models", "--pipeline", "no_such_pipeline")
    assert_one_line_error(done, "no pipeline 'no_such_pipeline'", "flights_delay")


def test_ui_on_a_busy_port_exits_and_leaves_nothing_running(tmp_path: Path, busy_port: int) -> None:
    started = time.monotonic()
    done = ct(tmp_path, "ui", "--port", str(busy_port))
    assert_one_line_error(done, f"port {busy_port} is already in use")
    assert time.monotonic() - started < 30
    assert _processes_with_home(tmp_path) == []
    assert running_daemons(tmp_path / "dagster") == []


def test_demo_on_a_busy_port_starts_nothing(tmp_path: Path, busy_port: int) -> None:
    done = ct(tmp_path, "demo", "--port", str(busy_port), "--days", "1")
    assert_one_line_error(done, f"port {busy_port} is already in use")
    assert _processes_with_home(tmp_path) == []
    assert not (tmp_path / "landing").exists()


def test_a_dagster_home_that_cannot_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = ct(tmp_path, "recover", DAGSTER_HOME=str(blocker / "dagster"))
    assert_one_line_error(done, "cannot prepare the Dagster home", str(blocker / "dagster"))


def test_a_missing_instance_file(tmp_path: Path) -> None:
    done = ct(tmp_path, "recover", CT_DAGSTER_YAML=str(tmp_path / "missing.yaml"))
    assert_one_line_error(done, "CT_DAGSTER_YAML", "no such file")


def test_a_reader_that_went_away_stops_the_command_quietly(tmp_path: Path) -> None:
    """`ct spec check | head -1`: once the reader has closed the pipe, the next line ends the
    command without a word on stderr, with SIGPIPE's exit status."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [CT, "spec", "check"],
            env=_env(tmp_path / "home"),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = ct(tmp_path, "replay", "--start", "2013-01-05", "--end", "2013-01-01", "--debug")
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "CliError" in done.stderr


@pytest.mark.slow
def test_ui_while_a_daemon_runs_on_the_home(tmp_path: Path) -> None:
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(settings.REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    daemon = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(settings.REPO_ROOT / "workspace.yaml"),
        ],
        env=_env(tmp_path, DAGSTER_HOME=str(dagster_home)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        done = ct(tmp_path, "ui", "--port", str(free))
        assert_one_line_error(done, "a Dagster daemon is already running", f"pid {daemon.pid}")
        assert daemon.poll() is None  # the error left the running daemon alone
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
