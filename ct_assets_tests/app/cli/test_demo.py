"""`ct land` and `ct demo` on a fresh home: landing the demo's days writes one file per day and the
context tables; dates, day ranges and the pipeline are checked before anything is landed or started.
The demo itself (Dagster, serving, the UI) runs in `test_main` and `ct_assets_tests/app/test_demo`."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from ct_assets_tests.app.cli.conftest import RunCt, one_line_error
from ct_assets_tests.conftest import write_flights_variant


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on: a demo that got past its other checks stops here."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_land_writes_a_file_per_day_and_the_context_tables(
    run_ct: RunCt, home: Path, flights_landing: Path
) -> None:
    ran = run_ct("land", "--start", "20130101", "--end", "2013-01-02")  # a basic ISO date is normalised
    folder = home / "landing" / "flights_delay"
    assert (ran.code, ran.out, ran.err) == (0, f"landed 2 files under {folder}\n", "")
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "2013-01-01.csv",
        "2013-01-02.csv",
        "_context/planes.csv",
        "_context/weather.csv",
    ]
    assert len(pd.read_csv(folder / "2013-01-01.csv")) == 842
    assert len(pd.read_csv(folder / "2013-01-02.csv")) == 943
    landed_by_the_source = flights_landing / "flights_delay" / "2013-01-01.csv"
    assert (folder / "2013-01-01.csv").read_bytes() == landed_by_the_source.read_bytes()


def test_land_with_the_end_before_the_start(run_ct: RunCt, home: Path) -> None:
    ran = run_ct("land", "--start", "2013-01-05", "--end", "2013-01-01")
    assert one_line_error(ran) == "ct: --end 2013-01-01 is before --start 2013-01-05"
    assert ran.code == 1
    assert not (home / "landing").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["land", "--start", "2013-02-30", "--end", "2013-03-01"],
            "ct land: argument --start: '2013-02-30' is not a date (YYYY-MM-DD) (see ct land --help)",
        ),
        (
            ["land", "--start", "2013-01-01"],
            "ct land: the following arguments are required: --end (see ct land --help)",
        ),
        (
            ["demo", "--start", "2013-13-01"],
            "ct demo: argument --start: '2013-13-01' is not a date (YYYY-MM-DD) (see ct demo --help)",
        ),
        (
            ["demo", "--days", "two"],
            "ct demo: argument --days: invalid int value: 'two' (see ct demo --help)",
        ),
        (
            ["demo", "--seconds-per-day", "fast"],
            "ct demo: argument --seconds-per-day: invalid float value: 'fast' (see ct demo --help)",
        ),
    ],
)
def test_arguments_a_user_gets_wrong(run_ct: RunCt, home: Path, argv: list[str], message: str) -> None:
    ran = run_ct(*argv)
    assert ran.code == 2
    assert one_line_error(ran) == message
    assert not (home / "landing").exists()


@pytest.mark.parametrize("mode", [[], ["--offline"]])
def test_the_demo_needs_a_demo_source_pipeline(
    run_ct: RunCt,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    busy_port: int,
    mode: list[str],
) -> None:
    specs = tmp_path / "specs"
    write_flights_variant(specs / "files_b", {"name": "files_b", "source.kind": "files"})
    monkeypatch.setenv("CT_PIPELINES_DIR", str(specs))
    monkeypatch.setenv("CT_BUILTIN_PIPELINES", "0")
    ran = run_ct("demo", *mode, "--days", "1", "--port", str(busy_port))
    assert one_line_error(ran) == f"ct: no demo-source pipeline in {specs}"
    assert not (home / "landing").exists()


def test_the_demo_of_an_unknown_pipeline(run_ct: RunCt, home: Path, busy_port: int) -> None:
    ran = run_ct("demo", "--offline", "--pipeline", "no_such_pipeline", "--port", str(busy_port))
    assert one_line_error(ran).startswith("ct: no demo-source pipeline 'no_such_pipeline' in ")
    assert ran.err.strip().endswith("(have: flights_delay)")
    assert not (home / "landing").exists()
