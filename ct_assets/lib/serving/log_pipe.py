"""A size-rotated log file fed by a pipe: `python -m ct_assets.lib.serving.log_pipe FILE MAX_BYTES
BACKUPS` copies its standard input into FILE, line by line, and when FILE would grow past MAX_BYTES
renames it to FILE.1 (FILE.1 to FILE.2, ..., keeping BACKUPS of them) and starts a new one.

A slot's server writes its output here (`slots.SlotControl.start`): the slot outlives the command
that started it, so nothing in that command could rotate the file under it. The copier runs in its
own session and ends when the last process holding the pipe's other end exits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

MAX_BYTES = 20 * 2**20
BACKUPS = 3


def rotate(path: Path, backups: int) -> None:
    """FILE -> FILE.1 -> ... -> FILE.<backups> (the oldest is dropped)."""
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    if path.exists():
        if backups:
            path.replace(path.with_name(f"{path.name}.1"))
        else:
            path.unlink()


def copy(source: BinaryIO, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
    """Copy `source` into `path` until its end, rotating by size (see module)."""
    size = path.stat().st_size if path.exists() else 0
    out = path.open("ab")
    try:
        for line in source:
            if size and size + len(line) > max_bytes:
                out.close()
                rotate(path, backups)
                out, size = path.open("ab"), 0
            out.write(line)
            out.flush()
            size += len(line)
    finally:
        out.close()


if __name__ == "__main__":
    copy(sys.stdin.buffer, Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
