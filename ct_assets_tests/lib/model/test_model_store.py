"""Model artifacts stored by content hash: written once, read-only, refused when changed."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import numpy as np
import pytest
from catboost import CatBoostClassifier

from ct_assets.lib.model.model_store import ArtifactError, load_model, save_model


def _model(seed: int = 1) -> CatBoostClassifier:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3))
    model = CatBoostClassifier(iterations=10, random_seed=seed, verbose=False, allow_writing_files=False)
    return model.fit(features, (features[:, 0] > 0).astype(int))


def test_saved_under_its_hash_read_only_and_loaded_back(tmp_path: Path) -> None:
    model = _model()
    digest = save_model(tmp_path / "models", model)
    path = tmp_path / "models" / f"{digest}.cbm"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    rows = np.random.default_rng(1).normal(size=(5, 3))
    assert np.allclose(load_model(tmp_path / "models", digest).predict_proba(rows), model.predict_proba(rows))


def test_the_same_training_saves_once_to_the_same_hash(tmp_path: Path) -> None:
    first, second = save_model(tmp_path, _model()), save_model(tmp_path, _model())
    assert first == second
    assert [p.name for p in tmp_path.iterdir()] == [f"{first}.cbm"]  # no temporary left behind
    assert save_model(tmp_path, _model(seed=2)) != first


def test_missing_and_corrupted_artifacts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"model artifact .*/abc\.cbm is missing"):
        load_model(tmp_path, "abc")
    digest = save_model(tmp_path, _model())
    path = tmp_path / f"{digest}.cbm"
    path.chmod(0o644)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit changed
    with pytest.raises(ArtifactError, match=f"is corrupted: its sha256 is [0-9a-f]{{64}}, expected {digest}"):
        load_model(tmp_path, digest)
