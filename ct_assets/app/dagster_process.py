"""Supervising `dagster dev` (webserver, daemon and code server) for the live demo and `ct ui`.

`dagster dev` runs in the Dagster home (it warns about a `dagster.yaml` in any other working
folder, such as the project's own), with every path variable of the environment made absolute so
that the code server finds the same home, pipelines and files as the caller.

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

from ct_assets.lib.core.processes import wait_until_answers

# The locations `settings` reads from the environment (CT_PIPELINES_DIR: several, joined by
# os.pathsep); the Dagster home is prepared before `dagster dev` starts.
PATH_VARIABLES = (
    "CT_HOME",
    "CT_PIPELINES_DIR",
    "CT_LANDING",
    "CT_WAREHOUSE",
    "CT_REGISTRY",
    "BENTOML_HOME",
)


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
    """`dagster dev -w <workspace>` on loopback, with DAGSTER_HOME set, logging to a file (or to
    this process's terminal when `log_path` is None)."""

    def __init__(self, workspace: Path, dagster_home: Path, port: int, log_path: Path | None) -> None:
        self.workspace = Path(workspace)
        self.dagster_home = Path(dagster_home)
        self.port = port
        self.log_path = Path(log_path) if log_path is not None else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The caller's environment with DAGSTER_HOME set and every path variable absolute."""
        found = {**os.environ, "DAGSTER_HOME": str(self.dagster_home.absolute())}
        for name in PATH_VARIABLES:
            if found.get(name):
                parts = found[name].split(os.pathsep)
                found[name] = os.pathsep.join(str(Path(p).expanduser().absolute()) if p else p for p in parts)
        return found

    def start(self) -> None:
        log = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("a")
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        command = [_executable("dagster"), "dev", "-w", str(self.workspace.absolute()), "-h", "127.0.0.1"]
        self.process = subprocess.Popen(
            [*command, "-p", str(self.port)],
            env=self.environment(),
            cwd=self.dagster_home,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_restore_sigint,  # only resets a signal disposition
        )

    def wait_ready(self, timeout: float = 240) -> None:
        """Until the webserver answers (the code location loaded); raises if dagster dev exits."""
        assert self.process is not None, "start() first"
        what = f"dagster dev (log: {self.log_path})"
        wait_until_answers(f"{self.url}/server_info", self.process, what, timeout, interval=1)

    def _dagster(self, *args: str) -> str:
        """A `dagster` CLI command against this instance and workspace; its output, or an error."""
        done = subprocess.run(
            [_executable("dagster"), *args, "-w", str(self.workspace)],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"dagster {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    def start_all_sensors(self) -> str:
        """Turn on every sensor of the code location in the instance (landing, monitoring, automation)."""
        return self._dagster("sensor", "start", "--start-all")

    def launch_job(self, job: str) -> None:
        """Submit a run of `job` to the instance's queue (the daemon launches it)."""
        self._dagster("job", "launch", "-j", job)

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
