"""The audit chain check: walk from what serves traffic down to the raw files and recompute every hash.

serving bento (the deployment's active slot) -> `model_tag.txt` inside it -> the BentoML model (its
metadata's sha256 and the bytes of its `.cbm`) -> the registry record of that version (same sha256;
the registry's own artifact hashes to it) -> the frozen training set (its content hashes to the
dataset version) -> the partitions -> the raw files (on disk, same sha256 as at training; the
warehouse's raw rows still carry it) -> and the audit log's own hash chain.

Each link is a `Link` with a readable detail; a broken one names itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.audit import AuditLog
from ct_assets.lib.core.settings import use_bentoml_home
from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.governance import lineage
from ct_assets.lib.model.registry import Registry, RegistryError
from ct_assets.lib.serving.deployment_state import DeployState

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Link:
    name: str
    ok: bool
    detail: str


@dataclass
class ChainResult:
    """Every link walked, in order; `ok` only when all of them are."""

    pipeline: str
    bento: str | None
    model_version: str | None
    links: list[Link] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(link.ok for link in self.links)

    @property
    def problems(self) -> list[str]:
        return [f"{link.name}: {link.detail}" for link in self.links if not link.ok]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.links.append(Link(name, ok, detail))
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "bento": self.bento,
            "model_version": self.model_version,
            "ok": self.ok,
            "links": [link.__dict__ for link in self.links],
        }

    def render(self) -> str:
        head = f"{self.pipeline}: bento {self.bento or '-'} -> model {self.model_version or '-'}"
        body = [f"  [{'ok' if link.ok else 'BROKEN'}] {link.name}: {link.detail}" for link in self.links]
        verdict = "chain intact: every hash matches" if self.ok else f"{len(self.problems)} broken link(s)"
        return "\n".join([head, *body, verdict])


def _bento_model(result: ChainResult, bento_tag: str, bentoml_home: Path | None) -> dict[str, Any] | None:
    """bento -> model_tag.txt -> BentoML model: its metadata, with the .cbm's bytes hashed."""
    if bentoml_home is not None:
        use_bentoml_home(bentoml_home)
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bento = bentoml.bentos.get(bento_tag)
    except NotFound:
        result.add("bento", False, f"{bento_tag} is not in the BentoML store")
        return None
    tag_file = Path(bento.path) / "src" / "model_tag.txt"
    if not tag_file.is_file():
        result.add("bento", False, f"{bento_tag} has no model_tag.txt ({tag_file})")
        return None
    model_tag = tag_file.read_text().strip()
    result.add("bento", True, f"{bento_tag} at {bento.path} bundles model {model_tag}")
    try:
        model = bentoml.models.get(model_tag)
    except NotFound:
        result.add("bento model", False, f"{model_tag} (named by the bento) is not in the model store")
        return None
    meta = dict(model.info.metadata)
    artifact = Path(model.path) / f"{meta.get('model_sha256')}.cbm"
    if not artifact.is_file():
        result.add("bento model", False, f"{model_tag}: its artifact {artifact} is missing")
        return None
    now = sha256_of(artifact)
    result.add(
        "bento model",
        now == meta.get("model_sha256"),
        f"{model_tag}: {artifact.name} hashes to {now[:16]}"
        + (
            "" if now == meta.get("model_sha256") else f", metadata says {str(meta.get('model_sha256'))[:16]}"
        ),
    )
    return meta


def check_chain(
    pipeline: str,
    deploy_state: DeployState,
    registry: Registry,
    audit_log: AuditLog,
    con: duckdb.DuckDBPyConnection | None = None,
    bento_tag: str | None = None,
    bentoml_home: Path | None = None,
) -> ChainResult:
    """Walk the serving model's chain (or `bento_tag`'s); with no deployment, the champion's. The
    bento is looked up in the BentoML store at `bentoml_home` (`Config.bentoml_home`)."""
    tag = bento_tag or deploy_state.active_bento
    result = ChainResult(pipeline, tag, None)
    version: str | None = None
    recorded_sha: str | None = None
    if tag:
        meta = _bento_model(result, tag, bentoml_home)
        if meta is not None:
            version, recorded_sha = str(meta.get("model_version")), str(meta.get("model_sha256"))
    else:
        version = registry.champion_version()
        result.add(
            "deployment",
            True,
            "nothing is deployed: checking the champion's chain"
            if version
            else "nothing is deployed and there is no champion yet",
        )
    result.model_version = version
    if version:
        try:
            record = registry.get(version)
        except RegistryError as err:
            result.add("registry", False, str(err))
            record = None
        if record is not None:
            same = recorded_sha is None or recorded_sha == record.model_sha256
            result.add(
                "registry",
                same,
                f"{version} records sha256 {record.model_sha256[:16]}"
                + (
                    "" if same else f" but the bento's model has {recorded_sha[:16] if recorded_sha else '-'}"
                ),
            )
            walk = lineage.model_lineage(registry, version, con)
            model, dataset = walk.model, walk.dataset
            result.add(
                "model artifact",
                model.artifact_matches,
                f"{model.artifact} "
                + (
                    "hashes to the record"
                    if model.artifact_matches
                    else "does not hash to the record"
                    if model.artifact_exists
                    else "is missing"
                ),
            )
            result.add(
                "training set",
                dataset.matches,
                f"{dataset.version} ({dataset.path}): "
                + (
                    "content hash matches"
                    if dataset.matches
                    else "missing"
                    if not dataset.exists
                    else f"content now hashes to {dataset.content_hash_now}"
                ),
            )
            partition_problems = walk.partition_problems()
            files = sum(len(p.files) for p in walk.partitions)
            result.add(
                "partitions and raw files",
                not partition_problems,
                f"{len(walk.partitions)} partitions, {files} raw files re-hashed"
                + ("" if con is not None else " (warehouse not compared)")
                + ("" if not partition_problems else ": " + "; ".join(partition_problems)),
            )
    report = audit_log.verify()
    problems = list(report.problems)
    champion = registry.champion_version()
    moves = audit_log.entries(pipeline=pipeline, component="registry")
    if champion and (not moves or (moves[-1].get("details") or {}).get("version") != champion):
        problems.append(
            f"the registry's champion is {champion} but the audit log's last champion move is "
            f"{(moves[-1].get('details') or {}).get('version') if moves else 'missing'} (entries lost)"
        )
    result.add(
        "audit log",
        not problems,
        f"{report.entries} entries chained in {report.path}" if not problems else "; ".join(problems),
    )
    return result
