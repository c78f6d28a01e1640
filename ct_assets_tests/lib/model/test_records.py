"""The registry's typed records: validated on the way in and out, JSON only in the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ct_assets.lib.model.calibration import Calibration
from ct_assets.lib.model.metrics import Metrics
from ct_assets.lib.model.model_training import FeatureLayout
from ct_assets.lib.model.records import GateVerdict, ModelVersion, RecordedEvaluation
from ct_assets.lib.model.registry import Registry, RegistryError
from ct_assets_tests.conftest import evaluation, model_version, trained_model


def test_a_registered_model_reads_back_as_the_same_typed_record(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "p")
    calibrated = Calibration(0.9, -0.1, 1.0, 0.0, 200, 0.2, 0.25, 0.21)
    trained = trained_model(
        layout=FeatureLayout(categorical=["carrier"], numeric=["distance"]),
        calibration=calibrated,
        raw_files={"2013-01-01": [{"path": "/landing/a.csv", "sha256": "ab" * 32, "rows": 3}]},
    )
    version = registry.register(trained)
    record = registry.get(version)
    assert isinstance(record, ModelVersion) and record.version == version == "v0001"
    assert record.layout == FeatureLayout(categorical=["carrier"], numeric=["distance"])
    assert record.calibration == calibrated and record.raw_files["2013-01-01"][0].rows == 3
    assert record.evaluation is None and record.verdict is None and not record.passed
    stored = json.loads((tmp_path / "p" / "versions" / "v0001.json").read_text())
    assert stored["layout"] == {"categorical": ["carrier"], "numeric": ["distance"]}
    assert ModelVersion.model_validate(stored) == record


def test_an_evaluation_and_verdict_are_validated_as_their_types(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "p")
    version = registry.register(trained_model())
    judged = registry.update(
        version,
        evaluation=RecordedEvaluation.model_validate(evaluation(0.71)),
        verdict=GateVerdict(passed=True, reasons=[]),
    )
    assert isinstance(judged.evaluation.candidate, Metrics) and judged.holdout_auc == 0.71
    assert registry.get(version).passed
    with pytest.raises(ValidationError, match="passed"):
        registry.update(version, verdict={"passed": "perhaps", "reasons": []})
    assert registry.get(version).passed  # the refused update left the record as it was


def test_a_misspelt_field_is_an_error_not_a_silent_extra() -> None:
    with pytest.raises(ValidationError, match="treshold"):
        trained_model(treshold=0.4)
    with pytest.raises(ValidationError, match="model_sha256"):
        ModelVersion.model_validate({"version": "v0001"})


def test_a_damaged_record_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path, "p")
    version = registry.register(trained_model())
    path = tmp_path / "p" / "versions" / f"{version}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "threshold": "high"}))
    damaged = r"v0001\.json is not a valid model version record: threshold: Input should be a valid number"
    with pytest.raises(RegistryError, match=damaged):
        registry.get(version)


def test_records_are_immutable() -> None:
    record = model_version()
    with pytest.raises(ValidationError):
        record.threshold = 0.9  # type: ignore[misc]
    assert record.model_copy(update={"threshold": 0.9}).threshold == 0.9 and record.threshold == 0.5


def test_the_window_label_rate_weighs_the_splits_by_their_rows() -> None:
    record = model_version(
        label_rate={"train": 0.1, "validation": 0.4, "holdout": None},
        rows={"train": 900, "validation": 100, "holdout": 50},
    )
    assert record.window_label_rate() == pytest.approx((0.1 * 900 + 0.4 * 100) / 1000)
    unweighted = model_version(label_rate={"train": 0.1, "validation": 0.3}, rows={})
    assert unweighted.window_label_rate() == pytest.approx(0.2)
    assert model_version(label_rate={}).window_label_rate() is None
