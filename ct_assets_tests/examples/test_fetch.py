"""The example fetch scripts' shared command line (`examples/_fetch.py`), run as a user runs it:
`--help` describes the script with the whole first paragraph of its docstring."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ct_assets.lib.core import settings

SCRIPTS = sorted((settings.REPO_ROOT / "examples").glob("*/fetch.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.parent.name for s in SCRIPTS])
def test_help_describes_the_script_with_its_first_paragraph(script: Path) -> None:
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False)
    assert doc is not None
    first_paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    usage, description, *_ = done.stdout.split("\n\n")
    assert usage.startswith("usage: fetch.py")
    assert " ".join(description.split()) == first_paragraph
