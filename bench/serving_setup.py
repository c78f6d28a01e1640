"""Serving benchmark setup: a warehouse with 8 days of 2013 flights, a champion trained, registered
and promoted, the online snapshot published and a bento built, in a temporary folder, with the
same library calls the serving tests make; and the request rows a caller sends."""

from __future__ import annotations

import json
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from ct_assets.lib.core.spec import PipelineSpec
    from ct_assets.lib.model.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO_ROOT / "pipelines" / "flights_delay" / "spec.yaml"
DAYS = [f"2013-01-0{d}" for d in range(1, 9)]


def free_ports(count: int) -> list[int]:
    """Ports the OS hands out for port 0 (all bound at once, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class World:
    root: Path
    spec: PipelineSpec
    con: duckdb.DuckDBPyConnection
    registry: Registry
    record: dict[str, Any]
    bento: str
    snapshot: Path
    log_folder: Path
    setup_seconds: dict[str, float] = field(default_factory=dict)


def write_spec_variant(folder: Path, change: dict[str, Any]) -> Path:
    """A copy of the flights spec and its SQL in `folder`, with dotted keys changed."""
    import yaml

    raw = yaml.safe_load(SPEC_PATH.read_text())
    for dotted, value in change.items():
        target = raw
        *parents, last = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    (folder / "features").mkdir(parents=True, exist_ok=True)
    for sql in (SPEC_PATH.parent / "features").glob("*.sql"):
        shutil.copyfile(sql, folder / "features" / sql.name)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def build_world(root: Path) -> World:
    from ct_assets.lib.core.spec import load_spec
    from ct_assets.lib.core.warehouse import open_connection
    from ct_assets.lib.data import demo_source, online_snapshot
    from ct_assets.lib.model import steps as model_steps
    from ct_assets.lib.model.registry import Registry
    from ct_assets.lib.monitor.backtest import build_features
    from ct_assets.lib.serving import bento_build

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    spec = load_spec(
        write_spec_variant(
            root / "pipelines" / "flights_delay", {"training.min_rows": 500, "training.window_partitions": 8}
        )
    )
    landing = root / "landing"
    demo_source.land_context(landing, spec.name, list(spec.context_tables))
    for day in DAYS:
        demo_source.land_day(landing, spec.name, day)
    con = open_connection(root / "warehouse.duckdb")
    build_features(con, spec, landing, DAYS)  # the data layer's library steps, as the assets run them
    seconds["features"] = time.perf_counter() - started

    started = time.perf_counter()
    registry = Registry(root / "registry", spec.name)
    candidate = model_steps.train_candidate(
        spec, registry, model_steps.freeze_training_set(con, spec, registry, None)
    )
    registry.update(candidate.version, verdict={"passed": True, "reasons": [], "notes": ["benchmark"]})
    registry.promote(candidate.version, who="bench", why="serving benchmark")
    record = registry.champion()
    assert record is not None
    seconds["training"] = time.perf_counter() - started

    started = time.perf_counter()
    snapshot = root / "online"
    online_snapshot.publish(con, spec, DAYS[-1], snapshot, history_hours=48)
    bento = bento_build.build(spec, record, registry.models / f"{record.model_sha256}.cbm")
    seconds["bento"] = time.perf_counter() - started
    return World(root, spec, con, registry, record, str(bento.tag), snapshot, root / "log", seconds)


def request_rows(
    con: duckdb.DuckDBPyConnection, spec: PipelineSpec, days: list[str], limit: int
) -> list[dict]:
    """What a caller sends: validated rows without post-event columns, as JSON (latest first)."""
    from ct_assets.lib.core.warehouse import partition_view_sql, quote
    from ct_assets.lib.serving.request_parsing import request_columns

    frame = con.execute(
        partition_view_sql(spec.name, "validated", days)
        + f" ORDER BY {quote(spec.timestamp_column)} DESC, {quote(spec.entity_id)} LIMIT {limit}"
    ).df()
    frame = frame[list(request_columns(spec))]
    return json.loads(frame.to_json(orient="records", date_format="iso"))
