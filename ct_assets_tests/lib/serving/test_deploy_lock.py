"""The deployment lock with real processes and threads: another process holding it refuses a change
at once, naming the holder; the lock is free again once the holder is SIGKILLed; the holding thread
may take it again, another thread may not. Two real rollouts at once are in `test_rollout_faults`."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from ct_assets.lib.serving.deploy_lock import LOCK_FILE, DeploymentBusy, deployment_lock
from ct_assets_tests.lib.serving.lock_holder import hold_the_lock


def test_another_process_holding_the_lock_refuses_at_once_and_its_death_frees_it(tmp_path: Path) -> None:
    folder = tmp_path / "bird_strikes"
    folder.mkdir()
    other = hold_the_lock(folder)
    try:
        started = time.monotonic()
        with pytest.raises(DeploymentBusy) as refused, deployment_lock(folder, "stop", "bob"):
            pass
        assert time.monotonic() - started < 1
        message = str(refused.value)
        assert message.startswith(f"the bird_strikes deployment is busy: pid {other.pid} holds it since ")
        assert message.endswith("(rollout of b:v2 by ann); stop refused, try again when that ends")
        assert "\n" not in message
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(timeout=10)
    with deployment_lock(folder, "stop", "bob"):  # the kernel released the dead holder's lock
        assert '"action": "stop"' in (folder / LOCK_FILE).read_text()


def test_the_holding_thread_may_take_it_again_and_another_thread_may_not(tmp_path: Path) -> None:
    refusals: list[str] = []

    def other_thread() -> None:
        try:
            with deployment_lock(tmp_path, "failover", "watchdog"):
                refusals.append("taken")
        except DeploymentBusy as err:
            refusals.append(str(err))

    with (
        deployment_lock(tmp_path, "deploy start", "ann"),
        deployment_lock(tmp_path, "rollout of b:v2", "ann"),
    ):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=10)
    assert len(refusals) == 1 and "(deploy start by ann); failover refused" in refusals[0]
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=10)
    assert refusals[1] == "taken"
