"""The memory allocator a serving slot runs with: tcmalloc, preloaded through the environment of the
slot's processes, when it is installed.

DuckDB binds, plans and runs every feature query with many small C++ allocations, and it binds and
plans even a prepared statement again on each execution. With glibc's malloc those allocations take
a large part of the query's CPU; tcmalloc (Debian's `libtcmalloc-minimal4`) makes them cheaper, in
process and in a served slot (figures in bench/README). glibc's own tunable for a larger per-thread
cache helps in process but not in a served slot, so it is not offered.

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
