"""`ct status`: one summary of a pipeline, on a real home. A fresh home has every key and nothing
to report; a prediction log written by serving's own writer is counted as rows served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.serving.prediction_log import PredictionLogWriter
from ct_assets_tests.app.cli.test_errors import ct
from ct_assets_tests.lib.serving.test_predictor import _request

pytestmark = pytest.mark.slow  # each `ct status` imports Dagster to read the last retrain run: over 10 s here

KEYS = {"serving", "champion", "rows_served", "last_gate", "last_retrain", "last_rollout"}


def test_status_of_a_fresh_home(tmp_path: Path) -> None:
    done = ct(tmp_path, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert set(status) >= KEYS
    assert status["champion"] is None and status["rows_served"] == 0 and status["last_gate"] is None
    assert set(status["serving"]) == {"blue", "green"}
    assert all(s["bento"] is None and s["share"] == 0.0 and not s["up"] for s in status["serving"].values())
    assert not any(status["health"].values()) and {"daemon", "webserver"} <= set(status["health"])
    text = ct(tmp_path, "status")
    assert (
        text.returncode == 0 and "champion      none yet" in text.stdout and "rows served   0" in text.stdout
    )


def test_status_counts_the_rows_served(tmp_path: Path, flights_spec) -> None:
    writer = PredictionLogWriter(
        tmp_path / "prediction_log", load_spec(flights_spec.spec_dir / "spec.yaml"), "blue"
    )
    for request in range(7):
        writer.submit(_request(f"r{request}", 1.0))  # two predictions each
    writer.close()
    status = json.loads(ct(tmp_path, "status", "--json").stdout)
    assert status["rows_served"] == 14
