"""A warehouse of ten synthetic loan days for the model layer's tests: default depends on grade and
debt ratio, not on region, so a model on region alone carries no signal (`weak`)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection, replace_partition, transaction
from ct_assets_tests.defs.data import loans_pipeline

DAYS = [f"2024-03-{d:02d}" for d in range(1, 11)]


GRADE_RISK = {"A": 0.05, "B": 0.1, "C": 0.2, "D": 0.4, "E": 0.6}


def loan_features(
    day: str,
    seed: int,
    rows: int = 300,
    grade_risk: dict[str, float] = GRADE_RISK,
    ratio_weight: float = 0.3,
    shift: float = 0.0,
) -> pd.DataFrame:
    """A day of loan features whose default probability is the grade's risk plus `ratio_weight`
    times the debt ratio plus `shift`; region carries no signal."""
    rng = np.random.default_rng(seed)
    grade = rng.choice(list(grade_risk), rows)
    ratio = rng.uniform(0, 1, rows)
    risk = pd.Series(grade).map(grade_risk).to_numpy() + ratio_weight * ratio + shift
    return pd.DataFrame(
        {
            "loan_id": [f"{day}-{i}" for i in range(rows)],
            "applied_at": pd.Timestamp(day, tz="UTC")
            + pd.to_timedelta(rng.integers(0, 1440, rows), unit="min"),
            "amount": rng.uniform(100, 1000, rows),
            "debt_ratio": ratio,
            "grade": grade,
            "region": rng.choice(["north", "south", "east"], rows),
            "region_unemployment": 4.0,
            "defaulted": rng.uniform(0, 1, rows) < risk,
        }
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("gate")
    spec = load_spec(loans_pipeline.write_pipeline(root / "pipelines"))
    con = open_connection(root / "warehouse.duckdb")
    for index, day in enumerate(DAYS):
        con.register("_f", loan_features(day, index))
        with transaction(con):
            replace_partition(con, spec.name, "features", day, "SELECT * FROM _f")
        con.unregister("_f")
    weak = spec.model_copy(update={"training": spec.training.model_copy(update={"features": ["region"]})})
    yield {"root": root, "con": con, "spec": spec, "weak": weak}
    con.close()
