"""The memory allocator a serving slot runs with: tcmalloc, preloaded through the environment of the
slot's processes, when it is installed.

DuckDB binds, plans and runs every feature query with many small C++ allocations, and it binds and
plans even a prepared statement again on each execution. With glibc's malloc, those allocations took
a large part of the query's CPU: `perf` on a loop of 1,000-row feature queries put 27% of the samples
in `_int_malloc`, `_int_free`, `malloc` and `malloc_consolidate`. Preloading tcmalloc (Debian's
`libtcmalloc-minimal4`) had these effects:
- In process, the feature query took 2.1-2.4 instead of 3.2-5.7 ms of CPU for one row, and 4.6-5.1
  instead of 8.1-10.7 ms for 1,000 rows.
- In a served slot, it saved 0.8-0.9 ms of the slot's 6.0-6.9 ms of CPU per single-row request, in two
  alternating rounds.

glibc's own tunable for a larger per-thread cache gave the same gain in process, but none in the
served slot, so it is not offered.

`CT_SLOT_ALLOCATOR` chooses:
- `auto` (the default): tcmalloc when installed, otherwise glibc.
- `tcmalloc`: refused, with the install command, when it is missing.
- `glibc`: the C library's malloc, unchanged.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping

CHOICES = ("auto", "tcmalloc", "glibc")
TCMALLOC_PACKAGE = "libtcmalloc-minimal4"


class AllocatorError(RuntimeError):
    """An allocator that was asked for by name but cannot be used here."""


def find_tcmalloc() -> str | None:
    """The installed tcmalloc library's name (as the dynamic loader finds it for LD_PRELOAD), if any."""
    return ctypes.util.find_library("tcmalloc_minimal")


def allocator_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to a slot's environment for the allocator `CT_SLOT_ALLOCATOR` names.
    An LD_PRELOAD already set is kept; `CT_SLOT_ALLOCATOR` is set to the allocator chosen, so the
    service can report it."""
    environ = os.environ if environ is None else environ
    choice = environ.get("CT_SLOT_ALLOCATOR") or "auto"
    if choice not in CHOICES:
        raise AllocatorError(f"CT_SLOT_ALLOCATOR={choice!r}: choose one of {', '.join(CHOICES)}")
    if choice == "glibc":
        return {"CT_SLOT_ALLOCATOR": "glibc"}
    library = find_tcmalloc()
    if library is None:
        if choice == "tcmalloc":
            missing = f"tcmalloc is not installed: apt-get install {TCMALLOC_PACKAGE}"
            raise AllocatorError(f"CT_SLOT_ALLOCATOR=tcmalloc, but {missing}")
        return {"CT_SLOT_ALLOCATOR": "glibc"}
    preload = environ.get("LD_PRELOAD")
    return {"LD_PRELOAD": f"{library} {preload}" if preload else library, "CT_SLOT_ALLOCATOR": "tcmalloc"}
