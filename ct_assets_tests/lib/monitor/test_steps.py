"""The monitoring steps write typed tables: on a real DuckDB file, through the real data, model
and monitoring steps, a partition whose drift is skipped or whose columns are all null never fixes
a column's type for the partitions after it, with a context table and without."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import (
    open_connection,
    table_columns,
    table_name,
)
from ct_assets.lib.data import steps as data_steps
from ct_assets.lib.data.landing import context_file
from ct_assets.lib.data.profiles import ProfileFiles
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets.lib.monitor import store
from ct_assets_tests.conftest import ingest_days
from ct_assets_tests.defs.data import loans_pipeline

WINDOW = [f"2024-03-{d:02d}" for d in range(1, 11)]
NORMAL, SMALL, NULL_INCOME, LATER = "2024-03-11", "2024-03-12", "2024-03-13", "2024-03-14"


def _land(landing: Path, day: str, rows: int, seed: int, **change: object) -> None:
    folder = landing / "loans"
    folder.mkdir(parents=True, exist_ok=True)
    frame = loans_pipeline.applications(day, rows=rows, seed=seed, learnable=True).assign(**change)
    frame.to_csv(folder / f"{day}.csv", index=False)


def _ingest(con, spec: PipelineSpec, landing: Path, day: str) -> None:
    """The partition through the real data steps: raw, validated, feature groups, features."""
    ingest_days(con, spec, landing, [day], context=False)


def _loop(root: Path, context: bool) -> tuple:
    """A loans warehouse with ten ingested days and a champion trained on them."""
    spec = load_spec(loans_pipeline.write_pipeline(root / "pipelines", context=context))
    landing = root / "landing"
    if context:
        (landing / "loans" / "_context").mkdir(parents=True)
        pd.DataFrame({"region": ["north", "south", "east"], "unemployment": [4.1, 6.3, 5.0]}).to_csv(
            landing / "loans" / "_context" / "regions.csv", index=False
        )
    con = open_connection(root / "warehouse.duckdb")
    if context:
        data_steps.load_context(con, spec, "regions", context_file(landing, spec.name, "regions"))
    for index, day in enumerate(WINDOW):
        _land(landing, day, 300, index)
        _ingest(con, spec, landing, day)
    registry = Registry(root / "registry", spec.name)
    ref = model_steps.freeze_training_set(con, spec, registry, WINDOW[-1])
    candidate = model_steps.train_candidate(spec, registry, ref)
    result = model_steps.evaluate_candidate(spec, registry, candidate, ref)
    assert result.verdict.passed, result.verdict.reasons
    model_steps.promote(spec, registry, candidate, who="test")
    return spec, con, landing, registry, ProfileFiles(root / "profiles", spec.name)


def _monitor(con, spec: PipelineSpec, landing: Path, registry: Registry, profiles: ProfileFiles, day: str):
    _ingest(con, spec, landing, day)
    monitor_steps.profile_step(con, spec, day, profiles)
    monitor_steps.live_performance_step(con, spec, day, registry, profiles)
    return monitor_steps.drift_step(con, spec, day, registry, profiles)


def _declared_types(con, spec: PipelineSpec) -> None:
    for table in ("drift_summary", "drift_columns", "live_performance"):
        found = table_columns(con, spec.name, table)
        assert {c: found[c] for c in store.TABLES[table]} == store.TABLES[table], table


@pytest.mark.parametrize(
    ("context", "order"),
    [(True, [SMALL, NORMAL, NULL_INCOME, LATER]), (False, [NORMAL, SMALL, NULL_INCOME, LATER])],
    ids=["context-table", "no-context-table"],
)
def test_skipped_and_all_null_partitions_do_not_fix_types(tmp_path: Path, context: bool, order: list) -> None:
    spec, con, landing, registry, profiles = _loop(tmp_path, context)
    _land(landing, NORMAL, 300, 20)
    _land(landing, SMALL, 40, 21)  # below monitoring.min_rows: drift is skipped with a reason
    _land(landing, NULL_INCOME, 300, 22, income=None)  # debt_ratio is null on every row
    _land(landing, LATER, 300, 23)
    reports = {day: _monitor(con, spec, landing, registry, profiles, day) for day in order}

    assert reports[SMALL].result.skipped and reports[SMALL].result.share is None
    assert reports[NULL_INCOME].result.columns["debt_ratio"].skipped == "every value is null in the partition"
    assert reports[NORMAL].result.skipped is None and reports[LATER].result.skipped is None
    _declared_types(con, spec)
    summary = dict(
        con.execute(
            f"SELECT _partition_key, skipped FROM {table_name(spec.name, 'drift_summary')}"
        ).fetchall()
    )
    assert summary[SMALL].startswith("only 40 rows") and summary[NORMAL] is None and len(summary) == 4
    skipped = con.execute(
        f"SELECT _partition_key, skipped FROM {table_name(spec.name, 'drift_columns')} "
        "WHERE \"column\" = 'debt_ratio'"
    ).fetchall()
    assert dict(skipped) == {NORMAL: None, NULL_INCOME: "every value is null in the partition", LATER: None}
    signals = monitor_steps.recent_signals(con, spec, 10, registry.champion_version())
    assert [s.partition for s in signals] == sorted(order)
    con.close()
