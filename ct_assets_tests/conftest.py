"""Shared fixtures: the flights spec, demo landing files and a real DuckDB warehouse in tmp.

Tests mirror the package: `ct_assets_tests/lib/<layer>/test_<module>.py` tests
`ct_assets/lib/<layer>/<module>.py`.

The slow marker has one rule: a test is `@pytest.mark.slow` when it starts a real server or daemon
(BentoML, HAProxy, dagster dev/webserver/daemon, PostgreSQL, Chromium) or takes over 10 s; every
other test is fast. `pytest -m "not slow"` runs the fast set; the run's summary names each unmarked
test that took over 10 s on that machine.

No test depends on another's order: a module- or session-scoped fixture is only read by its tests
(the session's landing folder, a module's built home); a test that changes files works on its own
copy in `tmp_path`.
"""

from __future__ import annotations

import atexit
import os
import shutil
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
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.features import groups
from ct_assets.lib.data.landing import context_file, partition_files
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.records import Environment, ModelVersion, TrainedModel
from ct_assets.lib.serving import proxy

# BentoML's model and bento stores for the whole test session live in a temporary folder, removed
# when the session ends (unless the caller chose the folder).
if "BENTOML_HOME" not in os.environ:
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="ct-bentoml-")
    atexit.register(shutil.rmtree, os.environ["BENTOML_HOME"], ignore_errors=True)

SLOW_SECONDS = 10.0  # the slow marker's rule: a test that takes longer is marked slow
_unmarked_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time each test that is not marked slow (setup, call and teardown together)."""
    if "slow" not in report.keywords:
        _unmarked_seconds[report.nodeid] = _unmarked_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the tests not marked slow that took over SLOW_SECONDS: the rule says to mark them."""
    over = sorted(((t, n) for n, t in _unmarked_seconds.items() if t > SLOW_SECONDS), reverse=True)
    if over:
        terminalreporter.section(f"tests not marked slow that took over {SLOW_SECONDS:g} s")
        for seconds, nodeid in over:
            terminalreporter.write_line(f"{seconds:6.1f} s  {nodeid}")


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


def ingest_days(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, landing: Path, days: list[str], context: bool = True
) -> None:
    """Landed days through the real data steps: the context tables (unless `context` is False), then
    each day raw, validated, its feature groups and its features."""
    if context:
        for table in spec.context_tables:
            data_steps.load_context(con, spec, table, context_file(landing, spec.name, table))
    for day in days:
        data_steps.ingest_raw(con, spec, day, partition_files(landing, spec.name, day))
        data_steps.validate_partition(con, spec, day)
        for group in groups(spec):
            data_steps.materialize_group(con, spec, group, day)
        data_steps.build_features(con, spec, day)


def trained_model(**fields: object) -> TrainedModel:
    """A complete trained-model record for registry tests; `fields` set what the test is about."""
    defaults: dict[str, object] = {
        "pipeline": "test",
        "model_sha256": "0" * 64,
        "params": {},
        "seed": 0,
        "thread_count": 1,
        "best_iteration": 0,
        "training_cpu_seconds": 0.0,
        "threshold": 0.5,
        "layout": FeatureLayout(categorical=[], numeric=[]),
        "dataset_version": "d",
        "dataset_path": "",
        "partitions": {"train": [], "validation": [], "holdout": []},
        "rows": {},
        "label_rate": {},
        "feature_importance": {},
        "feature_version": "f",
        "feature_definitions": {},
        "environment": Environment(python="3.11", libraries={}, code_version="test"),
    }
    return TrainedModel.model_validate(defaults | fields)


def holdout_metrics(
    auc: float | None = 0.7, rows: int = 500, positive_rate: float = 0.25
) -> dict[str, object]:
    """Holdout figures as an evaluation records them (`metrics.Metrics`)."""
    return {
        "rows": rows,
        "positive_rate": positive_rate,
        "auc": auc,
        "f1": 0.5,
        "log_loss": 0.5,
        "brier": 0.2,
        "ece": 0.01,
    }


def evaluation(auc: float | None = 0.7, **fields: object) -> dict[str, object]:
    """An evaluation record whose candidate has holdout AUC `auc`."""
    return {
        "holdout_partitions": [],
        "against": None,
        "candidate": holdout_metrics(auc),
        "champion": None,
        **fields,
    }


def model_version(version: str = "v0001", **fields: object) -> ModelVersion:
    """A complete registered-model record (see `trained_model`); `fields` may set its evaluation
    and verdict too."""
    judged = {k: fields.pop(k) for k in ("evaluation", "verdict", "registered_at") if k in fields}
    trained = trained_model(**fields).model_dump()
    return ModelVersion.model_validate(
        {"registered_at": "2013-01-01T00:00:00+00:00", **trained, **judged, "version": version}
    )


def without_refit(spec: PipelineSpec) -> PipelineSpec:
    """`spec` with `training.refit: false`: the passed candidate itself serves."""
    return spec.model_copy(update={"training": spec.training.model_copy(update={"refit": False})})


def write_flights_variant(folder: Path, change: dict, keep_order: bool = False) -> Path:
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
    # Keys sorted by default: the feature columns, and so the model, follow that order. The tests'
    # trained-model fixtures were set up with it; `keep_order` writes the spec's own order, the
    # model the built-in spec trains (what the demo test needs).
    path.write_text(yaml.safe_dump(raw, sort_keys=not keep_order))
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
