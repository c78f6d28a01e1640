"""Building a Bento for a pipeline's champion: the model into BentoML's model store, then an
immutable bento of the service, the library code and the pipeline's spec and SQL; and
`require_bento`, the check that a tag names a bento in the store before a slot is started on it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ct_assets.lib.core.settings import REPO_ROOT, use_bentoml_home
from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.model.records import ModelVersion

SERVICE = REPO_ROOT / "bentos" / "service.py"


def store_version(version: str, model_sha256: str) -> str:
    """The BentoML version of a registered model: its registry version and the first hex digits of
    its artifact's sha256. Registry versions restart at V0001 in every registry, and one BentoML
    store may serve several registries, so the version alone could find another model's bento."""
    return f"{version}-{model_sha256[:12]}".lower()


def model_tag(spec: PipelineSpec, record: ModelVersion) -> str:
    return f"{spec.name}:{store_version(record.version, record.model_sha256)}"


def bento_tag(spec: PipelineSpec, record: ModelVersion) -> str:
    return f"{spec.name}_service:{store_version(record.version, record.model_sha256)}"


class UnknownBento(RuntimeError):
    """A tag that names no bento in the BentoML store (or is not a bento tag at all)."""


def require_bento(tag: str) -> None:
    """Raise `UnknownBento` unless `tag` names a bento in the BentoML store of this process
    (`BENTOML_HOME`, which the slots it starts inherit)."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        raise UnknownBento(f"no bento {tag!r} in the bento store") from None
    except (BentoMLException, ValueError):
        raise UnknownBento(
            f"{tag!r} is not a bento tag (name:version, of lowercase letters, digits, '_', '-' and '.')"
        ) from None


def _point_bentoml_at(bentoml_home: Path | None) -> None:
    """Point BentoML at the store in `bentoml_home` (None: BentoML's own `BENTOML_HOME` as set)."""
    if bentoml_home is not None:
        use_bentoml_home(bentoml_home)


def uv_on_path() -> None:
    """Make the uv that runs us findable on PATH: BentoML locks a bento's packages with `uv` from
    PATH, and otherwise tries `pip install uv` into a uv-made environment, which has no pip. `uv run`
    names itself in `$UV`, also in a new shell whose PATH lacks uv's folder."""
    uv = os.environ.get("UV")
    if shutil.which("uv") is None and uv and Path(uv).is_file():
        os.environ["PATH"] = os.pathsep.join([str(Path(uv).parent), os.environ.get("PATH", "")])


def store_model(
    spec: PipelineSpec, record: ModelVersion, artifact: Path, bentoml_home: Path | None = None
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
        "model_sha256": record.model_sha256,
        "model_version": record.version,
        "layout": {"categorical": record.layout.categorical, "numeric": record.layout.numeric},
        "threshold": record.threshold,
        "dataset_version": record.dataset_version,
    }
    with bentoml.models.create(tag, labels={"pipeline": spec.name}, metadata=metadata) as model:
        shutil.copyfile(artifact, Path(model.path) / artifact.name)
    return tag


def build(spec: PipelineSpec, record: ModelVersion, artifact: Path, bentoml_home: Path | None = None) -> Any:
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
    uv_on_path()
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
            version=store_version(record.version, record.model_sha256),
            build_ctx=str(root),
            models=[model],
            labels={"pipeline": spec.name, "model": record.version},
            description=f"{spec.name} champion {record.version} (model sha256 {record.model_sha256})",
        )
