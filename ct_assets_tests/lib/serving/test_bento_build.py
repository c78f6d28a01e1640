"""Bento building from a verified model artifact: tags per version, the model stored once with its
metadata, and a bento that bundles the service, the library (without the wiring), the pipeline spec
and the tag of its model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from catboost import CatBoostClassifier

from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.model.model_store import save_model
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.serving import bento_build
from ct_assets_tests.conftest import model_version, write_flights_variant


@pytest.fixture
def champion(tmp_path: Path) -> tuple[PipelineSpec, ModelVersion, Path]:
    """A spec with a name of its own (the BentoML store is shared by the session) and a record."""
    name = f"bento_{tmp_path.name.lower().replace('-', '_')[:20]}"
    spec = load_spec(write_flights_variant(tmp_path / "spec", {"name": name}))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(100, 2))
    model = CatBoostClassifier(iterations=5, verbose=False, allow_writing_files=False, random_seed=1)
    model.fit(features, (features[:, 0] > 0).astype(int))
    digest = save_model(tmp_path / "models", model)
    record = model_version(
        "V0003",
        model_sha256=digest,
        layout={"categorical": [], "numeric": ["a", "b"]},
        threshold=0.4,
        dataset_version="abc123",
    )
    return spec, record, tmp_path / "models" / f"{digest}.cbm"


def test_tags_are_lower_case_per_version_and_artifact(champion) -> None:
    spec, record, _ = champion
    version = f"v0003-{record.model_sha256[:12]}"
    assert bento_build.model_tag(spec, record) == f"{spec.name}:{version}"
    assert bento_build.bento_tag(spec, record) == f"{spec.name}_service:{version}"
    other_registry = record.model_copy(update={"model_sha256": "f" * 64})
    assert bento_build.bento_tag(spec, other_registry) != bento_build.bento_tag(spec, record)


def test_the_model_is_stored_once_with_its_metadata(champion) -> None:
    import bentoml

    spec, record, artifact = champion
    tag = bento_build.store_model(spec, record, artifact)
    stored = bentoml.models.get(tag)
    assert stored.info.metadata["model_sha256"] == record.model_sha256
    assert stored.info.metadata["threshold"] == 0.4 and stored.info.labels == {"pipeline": spec.name}
    assert (Path(stored.path) / artifact.name).read_bytes() == artifact.read_bytes()
    assert bento_build.store_model(spec, record.model_copy(update={"threshold": 0.9}), artifact) == tag
    assert bentoml.models.get(tag).info.metadata["threshold"] == 0.4  # not stored again


def test_the_bento_bundles_service_library_spec_and_model_tag(champion) -> None:
    spec, record, artifact = champion
    bento = bento_build.build(spec, record, artifact)
    assert str(bento.tag) == bento_build.bento_tag(spec, record)
    source = Path(bento.path) / "src"
    assert (source / "model_tag.txt").read_text() == bento_build.model_tag(spec, record)
    assert (source / "service.py").read_text() == bento_build.SERVICE.read_text()
    assert (source / "ct_assets" / "lib" / "serving" / "predictor.py").is_file()
    assert not (source / "ct_assets" / "defs").exists()
    assert (source / "pipeline" / "spec.yaml").read_text() == (spec.spec_dir / "spec.yaml").read_text()
    assert [str(m.tag) for m in bento.info.models] == [bento_build.model_tag(spec, record)]
    assert bento_build.build(spec, record, artifact).tag == bento.tag  # found, not built again
    bento_build.require_bento(str(bento.tag))  # in the store: no complaint


def test_a_tag_that_names_no_bento_is_refused_in_one_line() -> None:
    with pytest.raises(bento_build.UnknownBento) as error:
        bento_build.require_bento("nosuch:tag")
    assert str(error.value) == "no bento 'nosuch:tag' in the bento store"
    with pytest.raises(bento_build.UnknownBento, match=r"^'a b:c' is not a bento tag \(name:version"):
        bento_build.require_bento("a b:c")


def test_the_uv_that_runs_us_is_put_on_path_for_bentomls_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv = tmp_path / "tools" / "uv"
    uv.parent.mkdir()
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("UV", str(uv))
    if shutil.which("uv"):
        pytest.skip("uv is installed system-wide here: PATH already finds it")
    bento_build.uv_on_path()
    assert shutil.which("uv") == str(uv)
    bento_build.uv_on_path()
    assert os.environ["PATH"].count(str(uv.parent)) == 1, "added once"
