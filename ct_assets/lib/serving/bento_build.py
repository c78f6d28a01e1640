"""Building a Bento for a pipeline's champion: the model into BentoML's model store, then an
immutable bento of the service, the library code and the pipeline's spec and SQL."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ct_assets.lib.core.settings import REPO_ROOT, use_bentoml_home
from ct_assets.lib.core.spec import PipelineSpec

SERVICE = REPO_ROOT / "bentos" / "service.py"


def model_tag(spec: PipelineSpec, record: dict[str, Any]) -> str:
    return f"{spec.name}:{record['version'].lower()}"


def bento_tag(spec: PipelineSpec, record: dict[str, Any]) -> str:
    return f"{spec.name}_service:{record['version'].lower()}"


def _point_bentoml_at(bentoml_home: Path | None) -> None:
    """Point BentoML at the store in `bentoml_home` (None: BentoML's own `BENTOML_HOME` as set)."""
    if bentoml_home is not None:
        use_bentoml_home(bentoml_home)


def store_model(
    spec: PipelineSpec, record: dict[str, Any], artifact: Path, bentoml_home: Path | None = None
) -> str:
    """Copy the champion's verified artifact into BentoML's model store (once per version)."""
    _point_bentoml_at(bentoml_home)
    import bentoml
    from bentoml.exceptions import NotFound

    tag = model_tag(spec, record)
    try:
        bentoml.models.get(tag)
        return tag
    except NotFound:
        pass
    metadata = {
        "model_sha256": record["model_sha256"],
        "model_version": record["version"],
        "layout": record["layout"],
        "threshold": record["threshold"],
        "dataset_version": record["dataset_version"],
    }
    with bentoml.models.create(tag, labels={"pipeline": spec.name}, metadata=metadata) as model:
        shutil.copyfile(artifact, Path(model.path) / artifact.name)
    return tag


def build(
    spec: PipelineSpec, record: dict[str, Any], artifact: Path, bentoml_home: Path | None = None
) -> Any:
    """Build (or find) the immutable bento for this champion version in the BentoML store at
    `bentoml_home` (`Config.bentoml_home`); returns the Bento."""
    _point_bentoml_at(bentoml_home)
    import bentoml
    from bentoml.exceptions import NotFound

    tag = bento_tag(spec, record)
    try:
        return bentoml.bentos.get(tag)
    except NotFound:
        pass
    model = store_model(spec, record, artifact, bentoml_home)
    with tempfile.TemporaryDirectory() as context:
        root = Path(context)
        shutil.copyfile(SERVICE, root / "service.py")
        shutil.copytree(
            REPO_ROOT / "ct_assets",
            root / "ct_assets",
            ignore=shutil.ignore_patterns("__pycache__", "defs", "*.pyc"),
        )
        shutil.copytree(spec.spec_dir, root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        (root / "model_tag.txt").write_text(model)
        return bentoml.bentos.build(
            "service:TabularModelService",
            name=f"{spec.name}_service",
            version=record["version"].lower(),
            build_ctx=str(root),
            models=[model],
            labels={"pipeline": spec.name, "model": record["version"]},
            description=f"{spec.name} champion {record['version']} (model sha256 {record['model_sha256']})",
        )
