"""A small second dataset (loan applications) with its own spec, SQL and landing files.

It shares nothing with flights: other columns, other partition timezone, a reference context
table, files from a landing folder. Tests use it to prove the engine is dataset-agnostic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPEC = """
name: loans
description: Will a loan applicant default?
owner: credit-risk@example.com
source: {kind: files}
partitions: {grain: daily, start: 2024-03-01, end: 2024-04-01, timezone: UTC}
timestamp_column: applied_at
entity_id: loan_id
label: {column: defaulted, sql: sql/label.sql, description: Defaulted within a year}
columns:
  loan_id: {type: string, nullable: false}
  applied_at: {type: timestamp, nullable: false}
  amount: {type: float, nullable: false, min: 100, max: 100000}
  income: {type: float, min: 0}
  grade: {type: string, nullable: false, allowed: [A, B, C, D, E]}
  region: {type: string, nullable: false}
  days_late: {type: integer, min: 0}
post_event_columns: [days_late]
context_tables:
  regions:
    kind: reference
    key: [region]
    columns:
      region: {type: string, nullable: false}
      unemployment: {type: float}
feature_groups:
  application:
    sql: sql/application.sql
    columns:
      amount: {kind: numeric}
      debt_ratio: {kind: numeric}
      grade: {kind: categorical}
      region: {kind: categorical}
      region_unemployment: {kind: numeric}
segments: [grade]
training: {window_partitions: 10, validation_partitions: 2, holdout_partitions: 2}
quality: {max_quarantine_rate: 0.2}
"""

APPLICATION_SQL = """
SELECT v.loan_id, v.amount, v.amount / nullif(v.income, 0) AS debt_ratio, v.grade, v.region,
       r.unemployment AS region_unemployment
FROM validated AS v LEFT JOIN regions AS r USING (region)
"""

LABEL_SQL = "SELECT loan_id, coalesce(days_late > 90, FALSE) AS defaulted FROM validated"


# The same pipeline with no context table: its features come from the application alone.
SPEC_WITHOUT_CONTEXT = (
    SPEC.split("context_tables:")[0]
    + "feature_groups:"
    + SPEC.split("feature_groups:")[1].replace("      region_unemployment: {kind: numeric}\n", "")
)

APPLICATION_SQL_WITHOUT_CONTEXT = """
SELECT loan_id, amount, amount / nullif(income, 0) AS debt_ratio, grade, region FROM validated
"""


def write_pipeline(pipelines: Path, *, context: bool = True) -> Path:
    """The loans spec and its SQL under `pipelines/loans`; `context=False` writes the variant with
    no context table."""
    folder = pipelines / "loans"
    (folder / "sql").mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(SPEC if context else SPEC_WITHOUT_CONTEXT)
    (folder / "sql" / "application.sql").write_text(
        APPLICATION_SQL if context else APPLICATION_SQL_WITHOUT_CONTEXT
    )
    (folder / "sql" / "label.sql").write_text(LABEL_SQL)
    return folder / "spec.yaml"


def applications(day: str, rows: int = 60, seed: int = 0, learnable: bool = False) -> pd.DataFrame:
    """One day of applications; `learnable` makes default depend on grade and amount, so a model
    has something to learn (otherwise the label is noise)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day, tz="UTC")
    frame = pd.DataFrame(
        {
            "loan_id": [f"{day}-{i:04d}" for i in range(rows)],
            "applied_at": [
                (start + pd.Timedelta(minutes=int(m))).strftime("%Y-%m-%dT%H:%M:%SZ")
                for m in rng.integers(0, 1440, rows)
            ],
            "amount": rng.uniform(500, 50000, rows).round(2),
            "income": rng.uniform(10000, 150000, rows).round(2),
            "grade": rng.choice(list("ABCDE"), rows),
            "region": rng.choice(["north", "south", "east"], rows),
            "days_late": rng.choice([0, 0, 0, 10, 120], rows),
        }
    )
    if learnable:
        risk = frame["grade"].map({"A": 0.05, "B": 0.1, "C": 0.25, "D": 0.45, "E": 0.7})
        risk = risk + 0.2 * (frame["amount"] > 30000)
        frame["days_late"] = np.where(rng.uniform(0, 1, rows) < risk, 120, 0)
    return frame


def write_landing(landing: Path, days: list[str]) -> None:
    folder = landing / "loans"
    (folder / "_context").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"region": ["north", "south", "east"], "unemployment": [4.1, 6.3, 5.0]}).to_csv(
        folder / "_context" / "regions.csv", index=False
    )
    for index, day in enumerate(days):
        applications(day, seed=index).to_csv(folder / f"{day}.csv", index=False)
