"""Monitoring metadata as the UI shows it: Markdown tables, and a dashboard that waits for a live
champion instead of failing."""

from pathlib import Path

import dagster as dg

from ct_assets.defs.monitor.dashboards import drift_table, live_table, monitoring_dashboard_asset
from ct_assets.defs.resources import Warehouse
from ct_assets.lib.core.spec import PipelineSpec


def test_drift_and_live_metadata_are_markdown_tables() -> None:
    drift = drift_table(
        {
            "2013-01-02": "no champion yet: no reference to compare with",
            "2013-01-03": {
                "against": "v0001",
                "share": 0.41234,
                "drifted": ["origin_temp", "dest"],
                "description": "",
                "label_rate": 0.2,
                "reference_label_rate": 0.25,
                "prediction_hellinger": None,
            },
        }
    ).value
    lines = drift.splitlines()
    assert lines[0].startswith("| partition | against | importance share drifted | drifted features |")
    assert lines[3] == "| 2013-01-03 | v0001 | 0.412 | dest, origin_temp | 0.200 | 0.250 | - |"
    assert "no champion yet" in lines[2]
    live = live_table(
        {"2013-01-03": {"model": "v0001", "auc": 0.6512, "log_loss": 0.5, "ece": 0.01, "rows": 900}}
    )
    assert live.value.splitlines()[-1] == "| 2013-01-03 | v0001 | 0.651 | 0.500 | 0.010 | 900 |"


def test_the_dashboard_waits_for_a_live_champion(tmp_path: Path, flights_spec: PipelineSpec) -> None:
    result = dg.materialize(
        [monitoring_dashboard_asset(flights_spec)],
        resources={"warehouse": Warehouse(path=str(tmp_path / "w.duckdb"))},
    )
    metadata = result.asset_materializations_for_node(f"{flights_spec.name}__monitoring_dashboard")[
        0
    ].metadata
    assert metadata["partitions"].value == 0
    assert "no champion" in metadata["note"].value
