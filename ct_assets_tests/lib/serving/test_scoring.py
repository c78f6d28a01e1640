"""Scoring: a real (small) CatBoost model scored from feature rows without pandas gives exactly
what the training code's inputs give, on one row or many, with nulls; the JSON and Arrow answers
carry every prediction in request order; a scored request reaches the prediction log."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.model_training import MISSING_CATEGORY, FeatureLayout, model_inputs
from ct_assets.lib.serving import prediction_log
from ct_assets.lib.serving.feature_engine import FeatureRows
from ct_assets.lib.serving.prediction_log_writer import PredictionLogWriter
from ct_assets.lib.serving.scoring import (
    Prediction,
    Scored,
    Scorer,
    _categories,
    answer,
    answer_arrow,
    log_predictions,
    log_scored,
    new_request_id,
)

LAYOUT = FeatureLayout(categorical=["carrier", "weekday"], numeric=["distance", "temp"])
NAMES = ["flight_id", "carrier", "weekday", "distance", "temp"]


@pytest.fixture(scope="module")
def model():
    """A small CatBoost model on synthetic rows where every feature matters, nulls included."""
    from catboost import CatBoostClassifier

    rng = np.random.default_rng(3)
    count = 600
    carrier = rng.choice(["AA", "B6", "UA", None], count)
    weekday = rng.choice([0, 1, 2, 3, 4, 5, 6], count)
    distance = rng.integers(100, 3000, count).astype(float)
    temp = np.where(rng.uniform(size=count) < 0.2, np.nan, rng.normal(40, 15, count))
    logit = (
        (carrier == "B6") * 1.5 - (weekday == 5) * 1.0 + distance / 2000 - np.nan_to_num(temp, nan=20) / 40
    )
    late = rng.uniform(size=count) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({"carrier": carrier, "weekday": weekday, "distance": distance, "temp": temp})
    classifier = CatBoostClassifier(
        iterations=40, depth=3, verbose=False, thread_count=1, random_seed=1, allow_writing_files=False
    )
    classifier.fit(model_inputs(frame, LAYOUT), late.astype(int), cat_features=LAYOUT.categorical)
    return classifier


ROWS = [
    ("f0", "AA", 1, 500, 31.5),
    ("f1", "B6", 5, 2500, None),  # a missing number
    ("f2", None, 0, 1200, 60.0),  # a missing category
    ("f3", "UA", 6, 150, -5.0),
    ("f4", "ZZ", 3, 999, 12.25),  # a category the model never saw
]


def _table(rows: list[tuple]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    types = [pa.string(), pa.string(), pa.int32(), pa.int64(), pa.float64()]
    return pa.table({n: pa.array(list(c), t) for n, c, t in zip(NAMES, columns, types, strict=True)})


def _expected(model, rows: list[tuple]) -> np.ndarray:
    """What training's code path gives for the same rows (pandas, `model_inputs`)."""
    frame = pd.DataFrame.from_records(rows, columns=NAMES)
    return model.predict_proba(model_inputs(frame, LAYOUT))[:, 1]


def test_a_batch_scores_as_the_training_inputs_do(model) -> None:
    scorer = Scorer(model, LAYOUT)
    from_table = scorer.probabilities(FeatureRows(NAMES, table=_table(ROWS)))
    np.testing.assert_allclose(from_table, _expected(model, ROWS), rtol=0, atol=1e-6)
    from_rows = scorer.probabilities(FeatureRows(NAMES, rows=ROWS))  # tuples, no table: built from lists
    assert from_rows == pytest.approx(from_table, abs=1e-12)


def test_one_row_scores_as_it_does_in_a_batch(model) -> None:
    scorer = Scorer(model, LAYOUT)
    batch = scorer.probabilities(FeatureRows(NAMES, table=_table(ROWS)))
    for index, row in enumerate(ROWS):
        (alone,) = scorer.probabilities(FeatureRows(NAMES, rows=[row]))
        assert alone == pytest.approx(batch[index], abs=1e-6), row
        (from_table,) = scorer.probabilities(FeatureRows(NAMES, table=_table([row])))
        assert from_table == pytest.approx(alone, abs=1e-12)


def test_a_missing_category_is_its_own_category_not_a_text_none(model) -> None:
    scorer = Scorer(model, LAYOUT)
    missing = ("m", None, 2, 800, 30.0)
    as_text = ("t", MISSING_CATEGORY, 2, 800, 30.0)
    literal_none = ("n", "None", 2, 800, 30.0)
    scores = scorer.probabilities(FeatureRows(NAMES, table=_table([missing, as_text, literal_none])))
    assert scores[0] == scores[1]
    assert scorer.probabilities(FeatureRows(NAMES, rows=[missing])) == [pytest.approx(scores[1], abs=1e-6)]
    assert scores[2] != scores[0]  # the text "None" is an unseen category, not the null one


def test_feature_columns_are_read_by_name_not_position(model) -> None:
    scorer = Scorer(model, LAYOUT)
    reordered = ["temp", "flight_id", "distance", "weekday", "carrier"]
    order = [NAMES.index(n) for n in reordered]
    rows = [tuple(row[i] for i in order) for row in ROWS]
    assert scorer.probabilities(FeatureRows(reordered, rows=rows)) == pytest.approx(
        scorer.probabilities(FeatureRows(NAMES, rows=ROWS)), abs=1e-12
    )
    assert scorer.probabilities(FeatureRows(reordered, rows=rows[1:2])) == pytest.approx(
        scorer.probabilities(FeatureRows(NAMES, rows=ROWS[1:2])), abs=1e-12
    )


def test_no_rows_score_to_nothing(model) -> None:
    assert Scorer(model, LAYOUT).probabilities(FeatureRows(NAMES, rows=[])) == []
    assert Scorer(model, LAYOUT).probabilities(FeatureRows(NAMES, table=_table(ROWS).slice(0, 0))) == []


def test_categories_are_text_with_nulls_as_the_missing_category() -> None:
    texts = _categories(pa.array(["a", None, "c"]), "__m__")
    assert list(texts) == ["a", "__m__", "c"]
    assert list(_categories(pa.array(["x", None], pa.large_string()), "__m__")) == ["x", "__m__"]
    assert list(_categories(pa.array([3, None, 0], pa.int64()), "__m__")) == ["3", "__m__", "0"]
    assert list(_categories(pa.array([True, None]), "__m__")) == ["True", "__m__"]


def _scored(ids: list, probabilities: list[float], threshold: float = 0.5) -> Scored:
    features = FeatureRows(["flight_id", "distance"], rows=[(i, 100 * n) for n, i in enumerate(ids)])
    return Scored(
        request_id="r1",
        features=features,
        probabilities=probabilities,
        decisions=[p >= threshold for p in probabilities],
        segments={"origin": ["JFK"] * len(ids)},
        event_times=[None] * len(ids),
        seconds=0.0125,
    )


def test_the_json_answer_lists_each_prediction_in_request_order() -> None:
    body = answer(_scored(["b", "a", 7], [0.75, 0.25, 0.5]), "v0003", "green", 0.5, "flight_id")
    assert body == {
        "request_id": "r1",
        "model_version": "v0003",
        "slot": "green",
        "threshold": 0.5,
        "predictions": [
            {"id": "b", "probability": 0.75, "decision": True},
            {"id": "a", "probability": 0.25, "decision": False},
            {"id": "7", "probability": 0.5, "decision": True},  # ids are text; at the threshold: True
        ],
    }


def test_an_answer_refuses_fewer_scores_than_rows() -> None:
    scored = _scored(["a", "b"], [0.1, 0.2])
    broken = Scored(**{**scored.__dict__, "probabilities": [0.1]})
    with pytest.raises(ValueError):
        answer(broken, "v1", "blue", 0.5, "flight_id")


def test_the_arrow_answer_is_a_stream_with_the_answer_in_its_metadata() -> None:
    threshold = 0.1 + 0.2  # a float whose text must round-trip exactly
    scored = _scored([11, 3, 8], [0.9, 0.1, 0.31], threshold)
    table = pa.ipc.open_stream(answer_arrow(scored, "v0003", "blue", threshold, "flight_id")).read_all()
    assert table.schema.field("id").type == pa.string()
    assert table.column("id").to_pylist() == ["11", "3", "8"]
    assert table.schema.field("probability").type == pa.float64()
    assert table.column("probability").to_pylist() == [0.9, 0.1, 0.31]
    assert table.column("decision").to_pylist() == [True, False, True]
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert {k: meta[k] for k in ("request_id", "model_version", "slot")} == {
        "request_id": "r1",
        "model_version": "v0003",
        "slot": "blue",
    }
    assert float(meta["threshold"]) == threshold
    # The JSON answer says the same.
    json_body = answer(scored, "v0003", "blue", threshold, "flight_id")
    assert [p["id"] for p in json_body["predictions"]] == table.column("id").to_pylist()


def test_an_arrow_answer_from_a_table_keeps_the_table_order() -> None:
    features = FeatureRows(["flight_id"], table=pa.table({"flight_id": ["z", "y", "x"]}))
    scored = Scored("r", features, [0.2, 0.4, 0.6], [False, False, True], {}, [None] * 3, 0.0)
    table = pa.ipc.open_stream(answer_arrow(scored, "v1", "blue", 0.5, "flight_id")).read_all()
    assert table.column("id").to_pylist() == ["z", "y", "x"]


@pytest.mark.parametrize("from_table", [False, True])
def test_a_scored_request_reaches_the_prediction_log(
    tmp_path: Path, flights_spec: PipelineSpec, from_table: bool
) -> None:
    ids = ["2013-01-02/AA1/JFK", "2013-01-02/B62/EWR"]
    if from_table:
        features = FeatureRows(
            ["flight_id", "distance"], table=pa.table({"flight_id": ids, "distance": [100, None]})
        )
    else:
        features = FeatureRows(["flight_id", "distance"], rows=[(ids[0], 100), (ids[1], None)])
    scored = Scored(
        request_id=new_request_id(),
        features=features,
        probabilities=[0.25, 0.75],
        decisions=[False, True],
        segments={"origin": ["JFK", "EWR"]},
        event_times=["2013-01-02 10:00:00+00:00", "2013-01-02 11:00:00+00:00"],
        seconds=0.004,
    )
    writer = PredictionLogWriter(tmp_path, flights_spec, "green")
    log_scored(writer, scored, "v0007")
    writer.close()
    assert writer.errors == 0
    (path,) = prediction_log.log_files(tmp_path, "green")
    (request,) = prediction_log.read_requests(path)
    assert request["request_id"] == scored.request_id and request["model_version"] == "v0007"
    assert request["slot"] == "green" and request["latency_ms"] == pytest.approx(4.0)
    assert request["entity_id"] == ids and request["score"] == [0.25, 0.75]
    assert request["decision"] == [False, True] and request["segments"] == {"origin": ["JFK", "EWR"]}
    assert request["features"]["distance"] == [100, None]


def test_predictions_of_several_requests_are_not_written_as_one(tmp_path: Path, flights_spec) -> None:
    predictions = [Prediction("r1", "a", 0.2, False, "v1"), Prediction("r2", "b", 0.9, True, "v1")]
    features = pd.DataFrame({"flight_id": ["a", "b"]})
    with pytest.raises(ValueError, match="several request ids"):
        log_predictions(tmp_path, flights_spec, predictions, features, {}, "blue")
    assert prediction_log.log_files(tmp_path) == []


def test_request_ids_are_new_hex_each_time() -> None:
    made = {new_request_id() for _ in range(1000)}
    assert len(made) == 1000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
