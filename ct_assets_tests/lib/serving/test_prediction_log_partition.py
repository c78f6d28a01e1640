"""Live performance from what serving actually answered: the prediction log is ingested per
partition (by event time) and joined with the labels when they land."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ct_assets.lib.core.warehouse import partition_view_sql
from ct_assets.lib.data.profiles import ProfileFiles
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.monitor import steps as monitor_steps
from ct_assets.lib.serving.scoring import Prediction, log_predictions
from ct_assets_tests.conftest import trained_model
from ct_assets_tests.lib.serving.test_predictor import DAY, featurized  # noqa: F401 - the shared fixture


def test_logged_predictions_drive_live_performance(featurized, flights_spec, tmp_path: Path) -> None:  # noqa: F811
    con, _ = featurized
    features = con.execute(partition_view_sql(flights_spec.name, "features", [DAY])).df()
    served = features.head(400)
    labels = served["late"].astype(int).to_numpy()
    scores = np.clip(
        0.3 * labels + np.random.default_rng(0).uniform(0, 0.7, len(served)), 0, 1
    )  # informative
    predictions = [
        Prediction("r", fid, float(s), bool(s > 0.5), "v0001")
        for fid, s in zip(served["flight_id"], scores, strict=True)
    ]
    log = tmp_path / "log"
    log_predictions(
        log,
        flights_spec,
        predictions,
        served[["flight_id"]],
        {},
        "blue",
        event_times=[t.isoformat() for t in served["sched_dep_at"]],
    )
    other_day = [Prediction("r", "elsewhere", 0.5, False, "v0001")]
    log_predictions(
        log,
        flights_spec,
        other_day,
        served[["flight_id"]].head(1),
        {},
        "blue",
        event_times=["2013-03-01T12:00:00+00:00"],
    )
    # a day nothing was served comes first (as before the first model serves): it must not fix the
    # table's column types to NULL, or every later day fails to ingest
    assert monitor_steps.ingest_predictions(con, flights_spec, "2013-01-03", log) == 0
    assert monitor_steps.ingest_predictions(con, flights_spec, DAY, log) == 400
    types = {row[0]: row[1] for row in con.execute(f"DESCRIBE {flights_spec.name}.predictions").fetchall()}
    assert {types[c] for c in ("request_id", "model_version", "entity_id", "event_time")} == {"VARCHAR"}
    assert types["score"] == "DOUBLE"

    registry = Registry(tmp_path / "registry", flights_spec.name)
    version = registry.register(trained_model(model_sha256="unused"))
    registry.update(version, verdict={"passed": True, "reasons": []})
    registry.promote(version, who="test", why="test")
    report = monitor_steps.live_performance_step(
        con, flights_spec, DAY, registry, ProfileFiles(tmp_path / "profiles", flights_spec.name)
    )
    assert report.source == "serving prediction log (400 of the partition's rows scored)"
    assert report.evaluation.overall.rows == 400 and report.evaluation.overall.auc > 0.7
    stored = con.execute(
        f"SELECT source, rows FROM {flights_spec.name}.live_performance WHERE segment = 'overall'"
    ).fetchall()
    assert stored == [(report.source, 400)]
