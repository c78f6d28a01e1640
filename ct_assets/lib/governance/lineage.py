"""Lineage: from a served prediction (its request id) back to the raw files it came from.

prediction log entry -> model version (registry record, artifact sha256) -> training set (dataset
version = content hash of the frozen Parquet) -> its partitions, split by split -> the raw landing
files each partition was ingested from, with their sha256 as recorded at training time, compared
with the warehouse's `raw_tags` now and with the file on disk now (still there? same bytes?).

Every hash is recomputed while walking, so the same walk is the audit chain check's core
(`ct_assets.lib.governance.chain_check`). The walk returns a typed `Lineage`
(`ct_assets.lib.governance.lineage_records`); `render` draws it as a tree for a terminal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.warehouse import PARTITION_COLUMN, key_literal, table_exists, table_name
from ct_assets.lib.data.landing import sha256_of
from ct_assets.lib.governance.lineage_records import (
    DatasetLink,
    Lineage,
    ModelLink,
    PartitionLink,
    PredictionLink,
    RawFileLink,
    RequestLink,
)
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.model.registry import Registry, RegistryError
from ct_assets.lib.model.training_set import content_version
from ct_assets.lib.serving import bento_build
from ct_assets.lib.serving.prediction_log import log_files, predictions, read_requests

if TYPE_CHECKING:
    import duckdb


class LineageError(LookupError):
    """A request id, model version or file that cannot be found; says where it looked."""


def find_request(log_root: Path, request_id: str, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Every logged prediction of one request (a request may score many rows), with its file."""
    root = Path(log_root)
    folders = [root / pipeline] if pipeline else sorted(p for p in root.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        for path in log_files(folder):
            for request in read_requests(path, request_id):
                found += [{**record, "_log_file": str(path)} for record in predictions(request)]
    if not found:
        raise LineageError(
            f"no prediction with request id {request_id!r} in the prediction log under {root} "
            "(wrong id, another home folder, a request the service refused with a 4xx, which "
            "scores nothing, or removed by retention: see the audit log)"
        )
    return found


def _file_status(path: str, recorded: str) -> dict[str, Any]:
    """Is the file still there, what does it hash to now, and is that what was recorded?"""
    file = Path(path)
    if not file.is_file():
        return {"exists": False, "sha256_now": None, "matches": False}
    now = sha256_of(file)
    return {"exists": True, "sha256_now": now, "matches": now == recorded}


def _warehouse_sources(
    con: duckdb.DuckDBPyConnection | None, pipeline: str, keys: list[str]
) -> dict[str, dict[str, Any]]:
    """Per partition, what the warehouse holds now: raw_tags files and the raw rows' sha256s."""
    if con is None or not keys:
        return {}
    literals = ", ".join(key_literal(k) for k in keys)
    found: dict[str, dict[str, Any]] = {k: {"tags": None, "rows": {}} for k in keys}
    if table_exists(con, pipeline, "raw_tags"):
        for key, files in con.execute(
            f"SELECT {PARTITION_COLUMN}, files FROM {table_name(pipeline, 'raw_tags')} "
            f"WHERE {PARTITION_COLUMN} IN ({literals})"
        ).fetchall():
            found[key]["tags"] = {f["path"]: f["sha256"] for f in json.loads(files)}
    if table_exists(con, pipeline, "raw"):
        for key, source, digest, rows in con.execute(
            f"SELECT {PARTITION_COLUMN}, _source_file, _source_sha256, count(*) "
            f"FROM {table_name(pipeline, 'raw')} WHERE {PARTITION_COLUMN} IN ({literals}) GROUP BY ALL"
        ).fetchall():
            found[key]["rows"].setdefault(source, {})[digest] = int(rows)
    return found


def dataset_link(record: ModelVersion) -> DatasetLink:
    """The frozen training set: does it exist, and does its content still hash to its version?"""
    import pandas as pd

    path = Path(record.dataset_path)
    now = content_version(pd.read_parquet(path)) if path.is_file() else None
    return DatasetLink(
        version=record.dataset_version,
        path=record.dataset_path,
        rows=record.rows,
        exists=now is not None,
        content_hash_now=now,
        matches=now == record.dataset_version,
    )


def _partition_link(record: ModelVersion, key: str, split: str, now: dict[str, Any] | None) -> PartitionLink:
    """One partition's raw files as recorded, each re-hashed and compared with the warehouse's `now`."""
    files = []
    for item in record.raw_files.get(key, []):
        compared = {}
        if now is not None:
            compared = {
                "in_raw_tags_now": (now["tags"] or {}).get(item.path) == item.sha256,
                "raw_rows_now": now["rows"].get(item.path, {}).get(item.sha256, 0),
            }
        files.append(
            RawFileLink(
                path=item.path,
                sha256=item.sha256,
                rows=item.rows,
                **_file_status(item.path, item.sha256),
                **compared,
            )
        )
    if now is None:
        return PartitionLink(key=key, split=split, files=files)
    rows_now = sum(sum(d.values()) for d in now["rows"].values())
    return PartitionLink(key=key, split=split, files=files, raw_rows_now=rows_now, raw_tags_now=now["tags"])


def model_lineage(registry: Registry, version: str, con: duckdb.DuckDBPyConnection | None = None) -> Lineage:
    """The lineage of one model version, down to the raw files, with every hash recomputed."""
    try:
        record = registry.get(version)
    except RegistryError as err:
        raise LineageError(str(err)) from None
    artifact = registry.models / f"{record.model_sha256}.cbm"
    artifact_now = sha256_of(artifact) if artifact.is_file() else None
    split_of = {k: split for split, keys in record.partitions.items() for k in keys}
    warehouse = _warehouse_sources(con, registry.pipeline, sorted(split_of))
    return Lineage(
        pipeline=registry.pipeline,
        model=ModelLink(
            version=version,
            registered_at=record.registered_at,
            model_sha256=record.model_sha256,
            artifact=str(artifact),
            artifact_exists=artifact_now is not None,
            artifact_matches=artifact_now == record.model_sha256,
            verdict_passed=record.verdict.passed if record.verdict else None,
            refit_of=record.refit_of,
            feature_version=record.feature_version,
            code_version=record.environment.code_version,
            is_champion=registry.champion_version() == version,
        ),
        dataset=dataset_link(record),
        partitions=[_partition_link(record, k, split_of[k], warehouse.get(k)) for k in sorted(split_of)],
        warehouse_compared=con is not None,
    )


def request_lineage(
    request_id: str,
    log_root: Path,
    registry_root: Path,
    con: duckdb.DuckDBPyConnection | None = None,
    pipeline: str | None = None,
) -> Lineage:
    """Request id -> prediction(s) -> model version -> dataset -> partitions -> raw files."""
    records = sorted(find_request(log_root, request_id, pipeline), key=lambda r: str(r.get("time") or ""))
    first = records[0]
    name = first.get("pipeline") or Path(first["_log_file"]).parents[1].name
    versions = list(dict.fromkeys(str(r["model_version"]) for r in records))
    registry = Registry(registry_root, name)
    lineage = model_lineage(registry, versions[0], con)
    model = lineage.model
    request = RequestLink(
        request_id=request_id,
        pipeline=name,
        time=first.get("time"),
        slot=first.get("slot"),
        model_version=first.get("model_version"),
        bento=f"{name}_service:{bento_build.store_version(model.version, model.model_sha256)}",
        log_file=first["_log_file"],
        predictions=[
            PredictionLink(
                entity_id=r.get("entity_id"),
                score=r.get("score"),
                decision=r.get("decision"),
                time=r.get("time"),
                model_version=r.get("model_version"),
            )
            for r in records
        ],
    )
    others = [model_lineage(registry, version, con) for version in versions[1:]]
    return lineage.model_copy(update={"request": request, "other_models": others})


def _mark(ok: bool | None) -> str:
    return "ok" if ok else "BROKEN" if ok is False else "?"


def _shown(value: object) -> str:
    """`value` as text safe for a terminal: control characters (newlines, ANSI escapes) escaped."""
    text = str(value)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _request_lines(request: RequestLink) -> list[str]:
    predictions = request.predictions
    calls = sorted({p.time for p in predictions if p.time is not None})
    lines = [
        f"request {request.request_id}  ({request.pipeline}, {request.time}, "
        f"slot {request.slot}, {len(predictions)} prediction(s))"
    ]
    if len(calls) > 1:
        lines[0] = (
            f"request {request.request_id}  ({request.pipeline}: the id was sent with {len(calls)} "
            f"calls, {calls[0]} to {calls[-1]}; {len(predictions)} prediction(s))"
        )
    for p in predictions[:5]:
        score = f"{p.score:.4f}" if p.score is not None else "-"
        call = f"  ({p.time}, model {p.model_version})" if len(calls) > 1 else ""
        lines.append(f"│   {_shown(p.entity_id)}: score {score} decision {p.decision}{call}")
    if len(predictions) > 5:
        lines.append(f"│   ... {len(predictions) - 5} more")
    lines.append(f"│   log {request.log_file}")
    lines.append(f"└─ bento {request.bento}")
    return lines


def _partition_lines(partitions: list[PartitionLink], refit_of: str | None) -> list[str]:
    """One branch per partition with its split in the dataset; a refit trained on every split of its
    candidate's window, which the line says beside the candidate's split."""
    lines = []
    for i, partition in enumerate(partitions):
        last = i == len(partitions) - 1
        branch, pad = ("└─", "   ") if last else ("├─", "│  ")
        extra = f"  raw rows now {partition.raw_rows_now}" if partition.raw_rows_now is not None else ""
        split = partition.split
        if refit_of and split != "train":
            split = f"{refit_of}'s {split}, trained on by the refit"
        lines.append(f"         {branch} partition {partition.key} ({split}){extra}")
        for item in partition.files:
            lines.append(
                f"         {pad}  └─ {item.path}  sha256 {item.sha256[:16]}  rows {item.rows}  "
                f"file {_mark(item.matches) if item.exists else 'MISSING'}"
            )
    return lines


def render(lineage: Lineage) -> str:
    """A readable tree: the request, then each model that answered it down to its raw files."""
    lines = _request_lines(lineage.request) if lineage.request else []
    for walked in [lineage, *lineage.other_models]:
        if walked is not lineage:
            lines.append(f"   the id's calls answered by model {walked.model.version}:")
        lines += _model_lines(walked)
    found = lineage.problems()
    if not lineage.warehouse_compared:
        lines.append("(warehouse not opened: raw rows and raw_tags were not compared)")
    lines.append("every hash matches" if not found else "BROKEN LINKS:\n  " + "\n  ".join(found))
    return "\n".join(lines)


def _model_lines(lineage: Lineage) -> list[str]:
    model, dataset = lineage.model, lineage.dataset
    rows = ", ".join(f"{k} {v}" for k, v in dataset.rows.items())
    return [
        f"   └─ model {model.version}  sha256 {model.model_sha256[:16]}  "
        f"artifact {_mark(model.artifact_matches)}"
        + (f"  (refit of {model.refit_of})" if model.refit_of else "")
        + ("  (champion)" if model.is_champion else ""),
        f"      └─ dataset {dataset.version}  ({rows})  content hash {_mark(dataset.matches)}",
        f"         │  {dataset.path}",
        *_partition_lines(lineage.partitions, model.refit_of),
    ]
