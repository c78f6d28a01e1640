"""Calibrated probabilities on real CatBoost models and a real DuckDB warehouse: Platt scaling on
the validation split makes the served probability follow a label rate that moved after the
training split; the calibration keeps the ranking, is recorded in the registry, travels inside the
artifact, and the serving Scorer gives the evaluation's probabilities."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import load_spec
from ct_assets.lib.core.warehouse import open_connection, replace_partition, transaction
from ct_assets.lib.model import calibration, metrics, model_training
from ct_assets.lib.model import steps as model_steps
from ct_assets.lib.model.model_store import load_model
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.feature_engine import FeatureRows
from ct_assets.lib.serving.scoring import Scorer
from ct_assets_tests.defs.data import loans_pipeline
from ct_assets_tests.lib.model.conftest import loan_features

DAYS = [f"2024-03-{d:02d}" for d in range(1, 11)]  # train 1-6, validation 7-8, holdout 9-10
SHIFTED = DAYS[6:]  # validation and holdout share a higher default rate than the training days
RISK = {"A": 0.03, "B": 0.06, "C": 0.12, "D": 0.25, "E": 0.4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("calibration")
    spec = load_spec(loans_pipeline.write_pipeline(root / "pipelines"))
    con = open_connection(root / "warehouse.duckdb")
    for index, day in enumerate(DAYS):
        con.register("_f", loan_features(day, index, 1500, RISK, 0.2, 0.2 if day in SHIFTED else 0.0))
        with transaction(con):
            replace_partition(con, spec.name, "features", day, "SELECT * FROM _f")
        con.unregister("_f")
    registry = Registry(root / "registry", spec.name)
    ref = model_steps.freeze_training_set(con, spec, registry, DAYS[-1])
    con.close()
    candidate = model_steps.train_candidate(spec, registry, ref)
    result = model_steps.evaluate_candidate(spec, registry, candidate, ref)
    return {"spec": spec, "registry": registry, "ref": ref, "candidate": candidate, "result": result}


def test_platt_recovers_a_known_slope_and_intercept() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, 40_000)
    y = (rng.uniform(0, 1, len(logits)) < 1 / (1 + np.exp(-(1.7 * logits - 0.8)))).astype(int)
    slope, intercept = calibration.fit_platt(logits, y)
    assert slope == pytest.approx(1.7, abs=0.06) and intercept == pytest.approx(-0.8, abs=0.05)


def test_the_intercept_is_found_even_where_the_sigmoid_starts_flat() -> None:
    """Scaled logits far out (30 here, every probability ~1 at intercept 0) sent Newton's steps off
    to 1e10 on real data (a refit's level on bird strikes); the bracketed root is the rate's logit."""
    rng = np.random.default_rng(5)
    logits = rng.normal(12.0, 0.01, 2_000)
    y = (rng.uniform(0, 1, len(logits)) < 0.09).astype(int)
    intercept = calibration.fit_intercept(logits, y, slope=2.5)
    mean = float(np.mean(1 / (1 + np.exp(-(2.5 * logits + intercept)))))
    assert mean == pytest.approx(y.mean(), abs=0.002) and abs(intercept) < 40, intercept
    assert calibration.fit_intercept(np.array([-3.0, 3.0]), np.array([0, 1]), 1.0) == pytest.approx(
        0.0, abs=1e-9
    )


def test_calibrated_probabilities_follow_a_shifted_label_rate(trained: dict) -> None:
    spec, ref, result = trained["spec"], trained["ref"], trained["result"]
    assert ref.label_rate["holdout"] - ref.label_rate["train"] > 0.15  # the rate moved after training
    holdout = model_steps.load_split(ref, "holdout")
    layout = FeatureLayout.of(spec)
    model = load_model(trained["registry"].models, trained["candidate"].model_sha256)
    served = model_training.score(model, holdout, layout)
    record = trained["registry"].get(trained["candidate"].version)
    raw = model_training.score(calibration.uncalibrated(model, record.calibration), holdout, layout)
    rate = ref.label_rate["holdout"]
    assert abs(float(served.mean()) - rate) < 0.02, (served.mean(), rate)
    assert rate - float(raw.mean()) > 0.08  # the uncalibrated model still predicts the old rate
    before, after = result.uncalibrated, result.candidate.overall
    assert after.auc == pytest.approx(before.auc, abs=1e-9)  # a monotone map keeps the ranking
    assert after.log_loss < before.log_loss and after.ece < before.ece
    names = list(result.curves)
    assert names == [
        f"candidate {result.candidate_version} before calibration",
        f"candidate {result.candidate_version}",
    ]


def test_the_calibration_is_recorded_and_travels_inside_the_artifact(trained: dict) -> None:
    registry, candidate, ref = trained["registry"], trained["candidate"], trained["ref"]
    record = registry.get(candidate.version)
    fitted = record.calibration
    assert fitted.method == "platt" and fitted.fitted_on == ref.partitions["validation"]
    assert fitted.rows == ref.rows["validation"] and fitted.label_rate == pytest.approx(
        ref.label_rate["validation"]
    )
    assert fitted.mean_after == pytest.approx(fitted.label_rate, abs=0.005)
    assert record.evaluation.candidate_uncalibrated.log_loss > record.evaluation.candidate.log_loss
    scale, bias = load_model(registry.models, candidate.model_sha256).get_scale_and_bias()
    assert scale == pytest.approx(fitted.slope * fitted.base_scale)
    assert bias == pytest.approx(fitted.slope * fitted.base_bias + fitted.intercept)
    identical, _ = model_steps.retrain_matches(trained["spec"], registry, candidate)
    assert identical  # training and calibration are deterministic


def test_the_uncalibrated_copy_is_the_early_stopped_model(trained: dict) -> None:
    spec, ref = trained["spec"], trained["ref"]
    layout = FeatureLayout.of(spec)
    plain = model_training.train(
        model_steps.load_split(ref, "train"),
        model_steps.load_split(ref, "validation"),
        spec,
        layout,
        spec.training.params,
    )
    model = load_model(trained["registry"].models, trained["candidate"].model_sha256)
    record = trained["registry"].get(trained["candidate"].version)
    holdout = model_steps.load_split(ref, "holdout")
    np.testing.assert_allclose(
        model_training.score(calibration.uncalibrated(model, record.calibration), holdout, layout),
        model_training.score(plain, holdout, layout),
        rtol=0,
        atol=1e-12,
    )


def test_the_serving_scorer_gives_the_evaluations_probabilities(trained: dict) -> None:
    spec, ref, registry = trained["spec"], trained["ref"], trained["registry"]
    record = registry.get(trained["candidate"].version)
    layout = record.layout
    model = load_model(registry.models, record.model_sha256)
    holdout = model_steps.load_split(ref, "holdout")
    evaluated = model_training.score(model, holdout, layout)
    assert metrics.compute(model_training.labels(holdout, spec), evaluated, 0.5).auc == pytest.approx(
        trained["result"].candidate.overall.auc
    )
    scorer = Scorer(model, layout)
    frame = holdout[layout.columns]
    batch = scorer.probabilities(
        FeatureRows(layout.columns, table=pa.Table.from_pandas(frame, preserve_index=False))
    )
    np.testing.assert_allclose(batch, evaluated, rtol=0, atol=1e-6)
    for index in (0, 7, len(frame) - 1):
        row = tuple(frame.iloc[index].tolist())
        assert scorer.probabilities(FeatureRows(layout.columns, rows=[row])) == [
            pytest.approx(evaluated[index], abs=1e-6)
        ]


def test_the_forward_check_trusts_a_persistent_shift_and_not_a_passing_one() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(-1.0, 1.0, 6000)
    days = np.repeat(["d1", "d2", "d3"], 2000)
    persistent = (rng.uniform(0, 1, len(logits)) < 1 / (1 + np.exp(-(logits + 1.0)))).astype(int)
    assert calibration.forward_trust(logits, persistent, days) == (1.0, "d3")
    # the older days ran at a higher rate that the newest day no longer shows
    passing = np.where(days == "d3", 1 / (1 + np.exp(-logits)), 1 / (1 + np.exp(-(logits + 1.5))))
    noisy = (rng.uniform(0, 1, len(logits)) < passing).astype(int)
    assert calibration.forward_trust(logits, noisy, days)[0] <= 0.25
    assert calibration.forward_trust(logits, noisy, np.repeat("d1", 6000)) == (1.0, None)
