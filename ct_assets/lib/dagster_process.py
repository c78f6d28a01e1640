"""Supervising `dagster dev` (webserver, daemon and code server) for the live demo.

`dagster dev` shuts its children down on SIGINT; a process started from a non-interactive shell
inherits an ignored SIGINT, so the child restores the default before exec. Stopping sends SIGINT
to the whole process group, waits, then escalates to SIGTERM and SIGKILL, so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _executable(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DagsterDev:
    """`dagster dev -w <workspace>` on loopback, with DAGSTER_HOME set, logging to a file."""

    def __init__(self, workspace: Path, dagster_home: Path, port: int, log_path: Path) -> None:
        self.workspace = Path(workspace)
        self.dagster_home = Path(dagster_home)
        self.port = port
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.dagster_home)}

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        command = [_executable("dagster"), "dev", "-w", str(self.workspace), "-h", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "-p", str(self.port)],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_restore_sigint,  # only resets a signal disposition
        )

    def wait_ready(self, timeout: float = 240) -> None:
        """Until the webserver answers (the code location loaded); raises if dagster dev exits."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.url}/server_info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"the Dagster webserver did not answer on {self.url} within {timeout:.0f} s")

    def start_all_sensors(self) -> str:
        """Turn on every sensor of the code location in the instance (landing, monitoring, automation)."""
        done = subprocess.run(
            [_executable("dagster"), "sensor", "start", "--start-all", "-w", str(self.workspace)],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dagster sensor start failed: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    def launch_job(self, job: str) -> None:
        """Submit a run of `job` to the instance's queue (the daemon launches it)."""
        done = subprocess.run(
            [_executable("dagster"), "job", "launch", "-j", job, "-w", str(self.workspace)],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dagster job launch {job} failed: {done.stderr.strip()[-2000:]}")

    def stop(self, timeout: float = 60) -> None:
        """SIGINT to the group, then SIGTERM, then SIGKILL; returns when every process is gone."""
        if self.process is None:
            return
        pgid = self.process.pid
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if not _group_alive(pgid):
                break
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader, or the group never looks empty
                if not _group_alive(pgid):
                    break
                time.sleep(0.2)
        self.process.wait(timeout=5)
        self.process = None
