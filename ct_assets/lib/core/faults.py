"""Fault injection for chaos tests: named points where a process stops when asked to.

A process whose environment sets `CT_FAULT_PAUSE` to a point's name stops at that point: it writes
`<pid> <point>` to the file `CT_FAULT_MARKER` (so a test knows exactly where it is) and sleeps for
`CT_FAULT_PAUSE_SECONDS` (default 120) before carrying on. A test then kills it there, for example in
the middle of a partition write, with the partition's rows deleted and re-inserted but not committed.
Without `CT_FAULT_PAUSE` a point costs one dictionary lookup.

Points: `write <schema>.<table> <partition_key>` (warehouse.replace_partition, after the insert,
inside the caller's transaction).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE = "CT_FAULT_PAUSE"
MARKER = "CT_FAULT_MARKER"
SECONDS = "CT_FAULT_PAUSE_SECONDS"


def point(name: str) -> None:
    """Stop here if the environment asks for this point (chaos tests only)."""
    wanted = os.environ.get(PAUSE)
    if not wanted or wanted != name:
        return
    marker = os.environ.get(MARKER)
    if marker:
        temporary = Path(marker + ".tmp")
        temporary.write_text(f"{os.getpid()} {name}\n")
        temporary.replace(marker)
    time.sleep(float(os.environ.get(SECONDS, "120")))
