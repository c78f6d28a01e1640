"""A real process that holds a deployment's lock (a rollout of b:v2 by ann) until it is killed, for
the tests of what other changes do meanwhile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLD = """
import sys, time
from ct_assets.lib.serving.deploy_lock import deployment_lock
with deployment_lock(sys.argv[1], "rollout of b:v2", "ann"):
    print("held", flush=True)
    time.sleep(300)
"""


def hold_the_lock(folder: Path) -> subprocess.Popen:
    """Start the holder on `folder` and return once it holds the lock (the caller kills it)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process
