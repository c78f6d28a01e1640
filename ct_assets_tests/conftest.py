"""Shared fixtures: the flights spec, demo landing files and a real DuckDB warehouse in tmp.

Tests mirror the package: `ct_assets_tests/lib/<layer>/test_<module>.py` tests
`ct_assets/lib/<layer>/<module>.py`.

The slow marker has one rule: a test is `@pytest.mark.slow` when it starts a real server or daemon
(BentoML, HAProxy, dagster dev/webserver/daemon, PostgreSQL, Chromium) or takes over 10 s; every
other test is fast. `pytest -m "not slow"` runs the fast set.

No test depends on another's order: a module- or session-scoped fixture is only read by its tests
(the session's landing folder, a module's built home); a test that changes files works on its own
copy in `tmp_path`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import yaml

from ct_assets.lib.core import settings
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import open_connection
from ct_assets.lib.data import demo_source
from ct_assets.lib.serving import proxy

# BentoML's model and bento stores for the whole test session live in a temporary folder.
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="ct-bentoml-"))

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


def write_flights_variant(folder: Path, change: dict) -> Path:
    """A copy of the flights pipeline (spec and SQL) in `folder`, with dotted spec keys changed
    (a value of None deletes the key); returns the spec path."""
    raw = yaml.safe_load(FLIGHTS_SPEC.read_text())
    for dotted, value in change.items():
        target = raw
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        if value is None:
            del target[last]
        else:
            target[last] = value
    (folder / "features").mkdir(parents=True, exist_ok=True)
    for sql in (FLIGHTS_SPEC.parent / "features").glob("*.sql"):
        (folder / "features" / sql.name).write_text(sql.read_text())
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


requires_haproxy = pytest.mark.skipif(
    proxy.find_haproxy() is None, reason="haproxy is not installed (scripts install it)"
)


def free_ports(count: int) -> list[int]:
    """Ports free on loopback right now, all different (bound together, then released)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports
