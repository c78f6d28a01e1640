"""Landing files: where a partition's files are and how to recognise them.

Layout: `<landing>/<pipeline>/<partition_key>.csv|.parquet`, or a folder
`<landing>/<pipeline>/<partition_key>/` holding such files. Context tables land as
`<landing>/<pipeline>/_context/<table>.csv|.parquet`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

FORMATS = {".csv": "csv", ".parquet": "parquet"}
CONTEXT_FOLDER = "_context"


class LandingError(ValueError):
    """A landing file that is missing or cannot be read; the message names the file."""


def pipeline_folder(landing_root: Path, pipeline: str) -> Path:
    return Path(landing_root) / pipeline


def file_format(path: Path) -> str:
    """'csv' or 'parquet', checked against the file's own bytes, or a `LandingError`."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise LandingError(f"{path}: not a CSV or Parquet file (expected .csv or .parquet)")
    size = path.stat().st_size
    if size == 0:
        raise LandingError(f"{path}: the file is empty (0 bytes)")
    with path.open("rb") as handle:
        head = handle.read(4)
    if kind == "parquet" and head != b"PAR1":
        raise LandingError(f"{path}: not a Parquet file (no PAR1 magic bytes)")
    # UTF-16 text holds NUL bytes; it is recognised by its byte-order mark.
    if kind == "csv" and b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise LandingError(f"{path}: not a text CSV file (binary content)")
    return kind


def partition_files(landing_root: Path, pipeline: str, partition_key: str) -> list[Path]:
    """The files landed for one partition, sorted; a clear error when there are none."""
    folder = pipeline_folder(landing_root, pipeline)
    candidates = [folder / f"{partition_key}{suffix}" for suffix in FORMATS]
    files = [p for p in candidates if p.is_file()]
    directory = folder / partition_key
    if directory.is_dir():
        files += sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise LandingError(
            f"no landing file for partition {partition_key} of {pipeline}: expected "
            f"{folder}/{partition_key}.csv, .parquet or a folder {directory}/"
        )
    return files


def context_file(landing_root: Path, pipeline: str, table: str) -> Path:
    folder = pipeline_folder(landing_root, pipeline) / CONTEXT_FOLDER
    for suffix in FORMATS:
        path = folder / f"{table}{suffix}"
        if path.is_file():
            return path
    raise LandingError(f"no file for context table {table!r}: expected {folder}/{table}.csv or .parquet")


def landed_partition_keys(landing_root: Path, pipeline: str) -> list[str]:
    """Partition keys that `partition_files` finds files for: a `<key>.csv` or `<key>.parquet`
    file, or a `<key>/` folder holding at least one file. A name that is not one of the spec's keys
    is listed too; `landing_names.reason` says which are not."""
    folder = pipeline_folder(landing_root, pipeline)
    if not folder.is_dir():
        return []
    keys = set()
    for path in folder.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.is_file() and path.suffix in FORMATS:
            keys.add(path.stem)
        elif path.is_dir() and any(f.is_file() and not f.name.startswith(".") for f in path.iterdir()):
            keys.add(path.name)
    return sorted(keys)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write a file so that a reader never sees half of it (temporary file, then rename); with
    `mode` (e.g. 0o600) the file has those permissions from its first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if mode is None:
        tmp.write_bytes(data)
    else:
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # an older temporary file keeps its mode otherwise
            handle.write(data)
    tmp.replace(path)
