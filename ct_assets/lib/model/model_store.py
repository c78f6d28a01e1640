"""Immutable model artifacts, stored and verified by content hash."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catboost import CatBoostClassifier


class ArtifactError(ValueError):
    """A model artifact that is missing or does not match its recorded hash."""


def _path(root: Path, sha256: str) -> Path:
    return Path(root) / f"{sha256}.cbm"


def save_model(root: Path, model: CatBoostClassifier) -> str:
    """Write the model under its sha256 (once; an artifact never changes); return the hash.

    CatBoost stamps each model with its finish time and a random guid; both are replaced so that
    the same training gives the same bytes, and so the same hash.
    """
    metadata = model.get_metadata()
    if "train_finish_time" in metadata:
        del metadata["train_finish_time"]
    metadata["model_guid"] = "ct-assets"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
    model.save_model(str(temporary), format="cbm")
    data = temporary.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    target = _path(root, digest)
    if target.exists():
        temporary.unlink()
    else:
        os.chmod(temporary, 0o444)
        temporary.replace(target)
    return digest


def load_model(root: Path, sha256: str) -> CatBoostClassifier:
    """Load a model, refusing it unless its bytes hash to `sha256`."""
    from catboost import CatBoostClassifier

    path = _path(root, sha256)
    if not path.is_file():
        raise ArtifactError(f"model artifact {path} is missing")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ArtifactError(f"model artifact {path} is corrupted: its sha256 is {actual}, expected {sha256}")
    model = CatBoostClassifier()
    model.load_model(blob=data)
    return model
