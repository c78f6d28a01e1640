"""Every ```bash block of README.md and docs/*.md, run as written in a fresh shell on a fresh home.

How a block is run (kept explicit, in the `STORIES` table below):

- A story is a list of blocks that share one home, run in order, as a reader of the page would
  (a backfill, then a rerun of a key). Each block runs with `bash -euo pipefail` from the repo root,
  in a new shell whose `CT_HOME` and `DAGSTER_HOME` point into the story's fresh temporary folder.
  The block's text is run as written, with one rewrite: `$PWD/.ct_home` becomes that folder, so a
  block's own `export CT_HOME=$PWD/.ct_home` does not write into the checkout.
- A block is named by its page and its first line (`FIRST_LINES`); a block on a page that no
  story and no `NOT_RUN` entry names fails `test_every_block_is_accounted_for`, so a new block
  needs a line here.
- `Step(block, timeout)`: run to completion within `timeout` seconds, exit 0 (or the `exit_code`
  the page documents, with `says` in its output).
  `Step(block, timeout, background=seconds)`: the block ends in a server: it must still be running
  after `seconds`, then it gets Ctrl-C (SIGINT) and must stop within 60 s.
- Files a block writes into the working folder (`as_of.yaml`) are removed after the story.
- A story may shorten spans through its environment (`env`): a spec override (a copy of the
  flights spec with a smaller training window, `CT_BUILTIN_PIPELINES=0`), never by editing the
  block or weakening a rule.
- The Quickstart block is run by CI itself (`.ci/run` is `bash scripts/test.sh`, and `demo.sh`
  shares its bootstrap): the test only checks that it is the README's first block and holds exactly
  the two commands.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ct_assets.lib.core import settings
from ct_assets_tests.conftest import write_flights_variant

ROOT = settings.REPO_ROOT
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def blocks(page: str) -> list[str]:
    return [m.group(1) for m in BLOCK.finditer((ROOT / page).read_text())]


def find(page: str, first_line: str) -> str:
    """The block of `page` whose first line starts with `first_line` (exactly one)."""
    found = [b for b in blocks(page) if b.startswith(first_line)]
    assert len(found) == 1, f"{page}: {len(found)} bash blocks start with {first_line!r}"
    return found[0]


@dataclass(frozen=True)
class Step:
    page: str
    first_line: str
    timeout: float = 300
    background: float | None = None
    exit_code: int = 0  # what the block's last command exits with, as the page says
    says: str | None = None  # text its output must hold


@dataclass(frozen=True)
class Story:
    steps: list[Step]
    flights_override: dict = field(default_factory=dict)  # spec keys changed in a flights copy


QUICKSTART = Step("README.md", "bash scripts/demo.sh")
# Ten days of flights through the documented backfill, the rerun of a key and of the range, then the
# first model trained from the Dagster CLI and listed by `ct models`, a candidate as of an earlier
# day that the gate refuses, the newest window again (the same model, which passes), a rollback and a
# promotion by hand.
FLIGHTS = Story(
    steps=[
        Step("docs/operations.md", "export CT_HOME=$PWD/.ct_home DAGSTER_HOME=$PWD/.ct_home/dagster\n", 600),
        Step("docs/operations.md", "uv run dagster asset materialize -m ct_assets.definitions \\", 600),
        Step(
            "docs/operations.md",
            "uv run dagster job execute -m ct_assets.definitions -j flights_delay_retrain\n",
            900,
        ),
        # the earlier candidate is judged against that champion; the page says a refusal fails the run
        Step(
            "docs/operations.md", "printf 'ops:", 900, exit_code=1, says="refused by the gate against v0001"
        ),
        # the newest window again ties the champion and passes; then a rollback and a promotion by hand
        Step(
            "docs/operations.md",
            "uv run dagster job execute -m ct_assets.definitions -j flights_delay_retrain   #",
            900,
            says="champion of flights_delay: v0002 -> v0005",
        ),
    ],
)
STORIES: dict[str, Story] = {
    "readme_file_source": Story(
        [
            Step(
                "README.md",
                "export CT_HOME=$PWD/.ct_home DAGSTER_HOME=$PWD/.ct_home/dagster CT_PIPELINES_DIR",
            )
        ]
    ),
    "operations_file_source": Story(
        [
            Step(
                "docs/operations.md",
                "export CT_HOME=$PWD/.ct_home DAGSTER_HOME=$PWD/.ct_home/dagster CT_PIPELINES_DIR",
            )
        ]
    ),
    "flights_backfill_and_training": FLIGHTS,
}
# Blocks no story runs yet, each with the reason: a deployment (bento, slots, HAProxy) or a
# PostgreSQL server must exist first.
NOT_RUN: dict[tuple[str, str], str] = {
    ("docs/operations.md", "uv run ct deploy start --pipeline flights_delay"): (
        "needs a trained champion and starts two slots behind HAProxy (test_deploy_start runs it)"
    ),
    (
        "docs/operations.md",
        "export CT_PG_HOST=db.internal",
    ): "needs a PostgreSQL server (test_scale_out runs that layout)",
    ("docs/operations.md", "uv run ct lineage 3f9c...e1"): "needs a served request id from a live deployment",
}


def _covered() -> list[tuple[str, str]]:
    steps = [QUICKSTART, *(s for story in STORIES.values() for s in story.steps)]
    return [(s.page, find(s.page, s.first_line)) for s in steps] + [
        (page, find(page, first)) for page, first in NOT_RUN
    ]


def test_every_block_is_accounted_for() -> None:
    covered = _covered()
    for page in PAGES:
        for block in blocks(page):
            assert (page, block) in covered, f"{page}: a bash block no story runs:\n{block}"


def test_the_readme_starts_with_the_two_quickstart_commands() -> None:
    first = blocks("README.md")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.split("#")[0].strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert first == find(QUICKSTART.page, QUICKSTART.first_line)
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def _environment(home: Path, story: Story) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env |= {"CT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    if story.flights_override:
        write_flights_variant(home / "specs" / "flights_delay", story.flights_override)
        env |= {"CT_PIPELINES_DIR": str(home / "specs"), "CT_BUILTIN_PIPELINES": "0"}
    return env


def _run(step: Step, home: Path, env: dict[str, str]) -> None:
    script = find(step.page, step.first_line).replace("$PWD/.ct_home", str(home))
    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        if step.background is None:
            output, _ = process.communicate(timeout=step.timeout)
            assert process.returncode == step.exit_code, (
                f"{step.page} block exited {process.returncode}, not {step.exit_code}:\n"
                f"{script}\n{output[-4000:]}"
            )
            assert step.says is None or step.says in output, (
                f"{step.page}: no {step.says!r} in\n{output[-4000:]}"
            )
            return
        try:
            output, _ = process.communicate(timeout=step.background)
            raise AssertionError(
                f"{step.page}: the server stopped early ({process.returncode}):\n{output[-4000:]}"
            )
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)
            process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert time.monotonic() - started < step.timeout


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STORIES))
def test_a_story_of_documented_blocks_runs_as_written(name: str, tmp_path: Path) -> None:
    story = STORIES[name]
    env = _environment(tmp_path, story)
    before = set(ROOT.iterdir())
    try:
        for step in story.steps:
            _run(step, tmp_path, env)
    finally:
        for made in set(ROOT.iterdir()) - before:  # files a block writes into the working folder
            made.unlink()
    assert (tmp_path / "dagster" / "dagster.yaml").is_file()
