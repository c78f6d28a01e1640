"""Shared fixtures: the flights spec, demo landing files and a real DuckDB warehouse in tmp."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ct_assets.lib import demo_source, settings
from ct_assets.lib.spec import PipelineSpec, load_spec
from ct_assets.lib.warehouse import open_connection

FLIGHTS_SPEC = settings.REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
FIRST_DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]


@pytest.fixture(scope="session")
def flights_spec() -> PipelineSpec:
    return load_spec(FLIGHTS_SPEC)


@pytest.fixture(scope="session")
def flights_landing(tmp_path_factory: pytest.TempPathFactory, flights_spec: PipelineSpec) -> Path:
    """A landing folder with the first three days of 2013 and the context tables (read-only)."""
    root = tmp_path_factory.mktemp("landing")
    demo_source.land_context(root, flights_spec.name, list(flights_spec.context_tables))
    for day in FIRST_DAYS:
        demo_source.land_day(root, flights_spec.name, day)
    return root


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_connection(tmp_path / "warehouse.duckdb")
    yield con
    con.close()
