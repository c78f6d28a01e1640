"""Fault points: a real child process stops at the named point and says where; other points pass."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ct_assets.lib.core import faults

_CHILD = (
    "import sys, time\n"
    "from ct_assets.lib.core import faults\n"
    "start = time.monotonic()\n"
    "faults.point(sys.argv[1])\n"
    "print(f'{time.monotonic() - start:.2f}')\n"
)


def _run_child(point: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    marker = tmp_path / "marker"
    environment = {k: v for k, v in os.environ.items() if k not in (faults.PAUSE, faults.MARKER)}
    environment |= {faults.MARKER: str(marker), **env}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, point],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done, marker


def test_without_the_environment_a_point_passes_at_once(tmp_path: Path) -> None:
    done, marker = _run_child("write flights.raw 2013-01-01", tmp_path)
    assert float(done.stdout) < 0.5
    assert not marker.exists()


def test_another_point_passes_at_once(tmp_path: Path) -> None:
    done, marker = _run_child(
        "write flights.raw 2013-01-01", tmp_path, **{faults.PAUSE: "write flights.raw 2013-01-02"}
    )
    assert float(done.stdout) < 0.5
    assert not marker.exists()


def test_the_named_point_writes_the_marker_and_pauses(tmp_path: Path) -> None:
    point = "write flights.raw 2013-01-01"
    done, marker = _run_child(point, tmp_path, **{faults.PAUSE: point, faults.SECONDS: "0.6"})
    assert float(done.stdout) >= 0.6
    pid, _, written = marker.read_text().strip().partition(" ")
    assert written == point and int(pid) > 0
    assert not Path(str(marker) + ".tmp").exists()  # written through a rename


def test_a_paused_process_can_be_killed_at_the_point(tmp_path: Path) -> None:
    point = "write x.y 2013-01-01"
    marker = tmp_path / "marker"
    environment = os.environ | {faults.PAUSE: point, faults.MARKER: str(marker)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, point], env=environment)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text().split()[0] == str(child.pid)
        child.kill()
        assert child.wait(timeout=10) != 0  # it never got past the point
    finally:
        child.kill()
        child.wait()
