"""Service metrics per slot from the prediction log, and the asset that shows them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import dagster as dg
import pandas as pd

from ct_assets.defs.deploy.factory import build_deploy_defs
from ct_assets.defs.resources import HomeFolder, Warehouse
from ct_assets.lib.core.processes import signal_tree
from ct_assets.lib.core.settings import Config
from ct_assets.lib.core.warehouse import open_connection, replace_partition, transaction
from ct_assets.lib.monitor.service_metrics import process_rss_mib, summarize

LOGGED = pd.DataFrame(
    {
        "request_id": ["a", "a", "b", "c", "d"],
        "time": [
            "2013-01-02T10:00:00+00:00",
            "2013-01-02T10:00:00+00:00",
            "2013-01-02T10:00:01+00:00",
            "2013-01-02T10:00:02+00:00",
            "2013-01-02T10:00:02+00:00",
        ],
        "model_version": ["v0001", "v0001", "v0001", "v0002", "v0001"],
        "slot": ["blue", "blue", "blue", "green", "blue"],
        "entity_id": ["1", "2", "3", "4", "5"],
        "score": [0.1, 0.2, 0.3, 0.4, 0.5],
        "decision": [False] * 5,
        "event_time": ["2013-01-02T12:00:00+00:00"] * 5,
        "latency_ms": [10.0, 10.0, 20.0, 5.0, 30.0],
    }
)


def test_summary_per_slot() -> None:
    rows = {r["slot"]: r for r in summarize(LOGGED)}
    assert rows["blue"]["requests"] == 3 and rows["blue"]["rows"] == 4
    assert rows["blue"]["p50_ms"] == 20.0 and rows["blue"]["rows_per_second"] == 2.0
    assert rows["green"]["model_versions"] == "v0002" and rows["green"]["rows_per_second"] is None
    assert process_rss_mib(os.getpid()) > 10


def test_memory_counts_children_in_sessions_of_their_own() -> None:
    """A slot's BentoML workers run in sessions of their own; their memory is the slot's all the same."""
    holder = (
        "import os, time; os.setsid(); block = bytearray(300 * 2**20); print('held', flush=True); "
        "time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {holder!r}])"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "held"
        assert process_rss_mib(parent.pid) > 300
    finally:
        signal_tree(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
    assert process_rss_mib(parent.pid) is None


def test_service_metrics_asset_shows_slots_and_a_latency_plot(flights_spec, tmp_path) -> None:
    con = open_connection(tmp_path / "w.duckdb")
    con.register("_p", LOGGED)
    with transaction(con):
        replace_partition(con, flights_spec.name, "predictions", "2013-01-02", "SELECT * FROM _p")
    con.close()
    asset = next(a for a in build_deploy_defs(flights_spec).assets if a.key.path[-1] == "service_metrics")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            partition_key="2013-01-02",
            instance=instance,
            resources={
                "warehouse": Warehouse(path=str(tmp_path / "w.duckdb")),
                "home": HomeFolder.of(Config.under(tmp_path)),
            },
        )
    metadata = result.asset_materializations_for_node(f"{flights_spec.name}__service_metrics")[0].metadata
    slots = {s["slot"]: s for s in metadata["slots"].value}
    assert slots["blue"]["rows"] == 4 and "data:image/png;base64," in metadata["latency"].value
