"""The log copier rotates by size, keeps the configured number of older files, and ends with its input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ct_assets.lib.core.settings import REPO_ROOT


def test_output_is_copied_and_rotated_by_size(tmp_path: Path) -> None:
    path = tmp_path / "blue.log"
    lines = b"".join(f"line {i:04d} {'x' * 40}\n".encode() for i in range(400))  # 20,000 bytes
    done = subprocess.run(
        [sys.executable, "-m", "ct_assets.lib.serving.log_pipe", str(path), "5000", "2"],
        input=lines,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["blue.log", "blue.log.1", "blue.log.2"]
    assert all(p.stat().st_size <= 5000 for p in tmp_path.iterdir())
    assert path.read_bytes().endswith(b"line 0399 " + b"x" * 40 + b"\n")
    kept = b"".join((tmp_path / name).read_bytes() for name in ("blue.log.2", "blue.log.1", "blue.log"))
    assert lines.endswith(kept)  # the newest lines, in order, none cut
