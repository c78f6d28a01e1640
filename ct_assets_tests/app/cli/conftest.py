"""Running `ct` in this process as a user runs it: `ct_assets.cli.main` with an argument list, on a
fresh home folder, with what it printed, its exit code and the files it left to check.

The environment a command sees is the home's alone: every `CT_*` and `DAGSTER_*` variable of the
calling shell is removed first, and `ct` exports `DAGSTER_HOME` into the process, so each variable is
set through `monkeypatch` and restored after the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ct_assets.cli import main
from ct_assets.lib.model.registry import Registry
from ct_assets_tests.conftest import evaluation, trained_model


@dataclass(frozen=True)
class Ran:
    """One `ct` command's exit code and what it printed."""

    code: int
    out: str
    err: str


RunCt = Callable[..., Ran]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `CT_HOME` (with its Dagster home inside) that loads the built-in pipelines only."""
    for name in list(os.environ):
        if name.startswith(("CT_", "DAGSTER_")):
            monkeypatch.delenv(name)
    folder = tmp_path / "home"
    monkeypatch.setenv("CT_HOME", str(folder))
    monkeypatch.setenv("DAGSTER_HOME", str(folder / "dagster"))
    return folder


@pytest.fixture
def run_ct(home: Path, capsys: pytest.CaptureFixture[str]) -> RunCt:
    """`run_ct("models", "--pipeline", "x")`: `ct models --pipeline x` on `home`. A usage error
    exits through argparse; its exit code is returned like any other."""

    def run(*argv: str) -> Ran:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        printed = capsys.readouterr()
        return Ran(code, printed.out, printed.err)

    return run


def one_line_error(ran: Ran) -> str:
    """The single line a failed command printed on stderr (no traceback)."""
    lines = ran.err.strip().splitlines()
    assert ran.code != 0, ran
    assert len(lines) == 1 and "Traceback" not in ran.err, ran.err
    return lines[0]


def register_version(
    registry: Registry,
    passed: bool | None,
    reasons: Sequence[str] = (),
    auc: float | None = None,
    **fields: object,
) -> str:
    """Register a model version (no artifact on disk) with its gate verdict (None: never judged) and,
    given `auc`, its holdout evaluation; returns its id."""
    distinct_sha = f"{len(registry.versions()):064d}"
    version = registry.register(
        trained_model(**{"pipeline": registry.pipeline, "model_sha256": distinct_sha, **fields})
    )
    judged: dict[str, object] = {}
    if passed is not None:
        judged["verdict"] = {"passed": passed, "reasons": list(reasons)}
    if auc is not None:
        judged["evaluation"] = evaluation(auc)
    if judged:
        registry.update(version, **judged)
    return version
