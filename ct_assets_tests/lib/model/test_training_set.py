"""Training sets: time-ordered splits, a stable content version, and refusals with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.core.warehouse import replace_partition, transaction
from ct_assets.lib.model.training_set import TrainingDataError, build_training_set, content_version
from ct_assets_tests.defs.data import loans_pipeline

DAYS = [f"2024-03-{d:02d}" for d in range(1, 13)]


@pytest.fixture
def loans(tmp_path: Path) -> PipelineSpec:
    spec = load_spec(loans_pipeline.write_pipeline(tmp_path / "pipelines"))
    return spec.model_copy(update={"training": spec.training.model_copy(update={"min_rows": 50})})


def _write_features(con, spec: PipelineSpec, days: list[str], label=lambda i: i % 3 == 0) -> None:
    for offset, day in enumerate(days):
        rng = np.random.default_rng(offset)
        frame = pd.DataFrame(
            {
                "loan_id": [f"{day}-{i}" for i in range(40)],
                "applied_at": pd.Timestamp(day, tz="UTC")
                + pd.to_timedelta(rng.integers(0, 1440, 40), unit="min"),
                "amount": rng.uniform(100, 1000, 40),
                "debt_ratio": rng.uniform(0, 1, 40),
                "grade": rng.choice(list("ABC"), 40),
                "region": "north",
                "region_unemployment": 4.0,
                "defaulted": [bool(label(i)) for i in range(40)],
            }
        )
        con.register("_f", frame)
        with transaction(con):
            replace_partition(con, spec.name, "features", day, "SELECT * FROM _f")
        con.unregister("_f")


def test_split_is_by_time_with_the_latest_partitions_held_out(warehouse, loans) -> None:
    _write_features(warehouse, loans, DAYS)
    training_set = build_training_set(warehouse, loans, as_of="2024-03-11")
    assert training_set.partitions == {
        "train": DAYS[1:7],
        "validation": DAYS[7:9],
        "holdout": DAYS[9:11],
    }  # window of 10 ending 03-11
    assert training_set.split("holdout")["applied_at"].min() > training_set.split("train")["applied_at"].max()
    assert len(training_set.frame) == 400
    again = build_training_set(warehouse, loans, as_of="2024-03-11")
    assert again.version == training_set.version
    assert build_training_set(warehouse, loans, as_of="2024-03-12").version != training_set.version


def test_version_ignores_row_order_but_not_values() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert content_version(frame) == content_version(frame.iloc[::-1])
    assert content_version(frame) != content_version(frame.assign(b=["x", "y", "q"]))


def test_one_class_only_is_refused(warehouse, loans) -> None:
    _write_features(warehouse, loans, DAYS, label=lambda i: False)
    with pytest.raises(TrainingDataError, match=r"the train split has one class only \(defaulted=False\)"):
        build_training_set(warehouse, loans)


def test_too_few_partitions_or_rows_are_refused(warehouse, loans) -> None:
    _write_features(warehouse, loans, DAYS[:4])
    with pytest.raises(TrainingDataError, match="4 feature partitions up to now; the split needs at least 5"):
        build_training_set(warehouse, loans)
    _write_features(warehouse, loans, DAYS)
    strict = loans.model_copy(update={"training": loans.training.model_copy(update={"min_rows": 10_000})})
    with pytest.raises(TrainingDataError, match="the train split has 240 rows, fewer than min_rows 10000"):
        build_training_set(warehouse, strict)


def test_a_holdout_without_labels_is_refused(warehouse, loans) -> None:
    _write_features(warehouse, loans, DAYS)
    warehouse.execute("DELETE FROM loans.features WHERE _partition_key IN ('2024-03-11', '2024-03-12')")
    warehouse.execute(
        "INSERT INTO loans.features (_partition_key, loan_id, defaulted) "
        "VALUES ('2024-03-11', 'x', NULL), ('2024-03-12', 'y', NULL)"
    )
    with pytest.raises(TrainingDataError, match="the holdout split has one class only"):
        build_training_set(warehouse, loans)
