"""Process checks on real child processes: running, zombie, reused ids, trees, environments."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ct_assets.lib.core import processes


def _sleeper(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args], env=env, **kwargs)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    children: list[subprocess.Popen] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_a_live_child_is_running_and_a_reaped_one_is_not(started) -> None:
    child = _sleeper()
    started.append(child)
    assert processes.is_running(child.pid)
    began = processes.started_at(child.pid)
    assert began is not None and abs(began - time.time()) < 30
    child.kill()
    child.wait()
    assert not processes.is_running(child.pid)
    assert processes.started_at(child.pid) is None


def test_a_zombie_is_not_running(started) -> None:
    child = _sleeper()
    started.append(child)
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.02)
    assert not processes.is_running(child.pid)  # dead but not yet reaped


def test_a_process_started_after_the_given_time_is_someone_else(started) -> None:
    before = time.time() - 60
    child = _sleeper()
    started.append(child)
    assert not processes.is_running(child.pid, started_before=before)
    assert processes.is_running(child.pid, started_before=time.time())


def test_wait_gone(started) -> None:
    child = _sleeper()
    started.append(child)
    assert not processes.wait_gone(child.pid, 0.2)
    child.terminate()
    threading.Thread(target=child.wait).start()  # reap it as a parent would
    assert processes.wait_gone(child.pid, 10)


def test_descendants_and_signal_tree_reach_a_grandchild_in_its_own_session(started) -> None:
    script = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    started.append(parent)
    grandchild = int(parent.stdout.readline())
    try:
        assert processes.descendants(parent.pid) == [grandchild]
        assert processes.descendants(grandchild) == []
        processes.signal_tree(parent.pid, signal.SIGTERM)
        assert parent.wait(timeout=10) == -signal.SIGTERM
        assert processes.wait_gone(grandchild, 10)
    finally:
        if processes.is_running(grandchild):
            os.kill(grandchild, signal.SIGKILL)


def test_with_environment_finds_the_marked_processes_only(started) -> None:
    mark = f"test-{os.getpid()}-{time.monotonic_ns()}"
    marked = _sleeper(env=os.environ | {"CT_TEST_MARK": mark})
    other = _sleeper(env=os.environ | {"CT_TEST_MARK": mark + "-other"})
    started.extend([marked, other])
    assert processes.with_environment("CT_TEST_MARK", mark) == [marked.pid]


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_wait_until_answers(started) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    child = _sleeper()
    started.append(child)
    try:
        processes.wait_until_answers(f"{base}/ok", child, "server", timeout=10, interval=0.05)
        with pytest.raises(RuntimeError, match=r"server did not answer on .*/down within 1 s"):
            processes.wait_until_answers(f"{base}/down", child, "server", timeout=1, interval=0.1)
        child.kill()
        child.wait()
        with pytest.raises(RuntimeError, match="server exited with -9"):
            processes.wait_until_answers(f"{base}/down", child, "server", timeout=10)
    finally:
        server.shutdown()
