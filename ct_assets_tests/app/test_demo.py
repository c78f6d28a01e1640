"""The demo's drivers: landing the demo source's days like a user's files, the pipeline's data layer
taken from the code location, and a partition run that reports a failure in its counts (fast).

The default demo's first minutes on a fresh home, as `bash scripts/demo.sh` runs them: the
history lands and the first champion is trained and rolled out by the loop itself, replayed
requests are answered by a champion, and a retrain that the loop's own rule requests goes through
its gate and, promoted, through a canary to a switch or an automatic rollback. The spec is the
built-in one (same gate, rules and cooldown); only its ports differ. Then the UI shows the story in
Chromium: the model serving, the gate's verdict with its reasons and the monitoring dashboard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from ct_assets.app.demo import PartitionCounts, data_assets, land_days, materialize_partition
from ct_assets.lib.core import names, settings
from ct_assets.lib.core.audit import flat
from ct_assets.lib.core.spec import PipelineSpec, load_spec
from ct_assets.lib.data.features import groups
from ct_assets_tests.app.test_live import _listening, _processes_mentioning
from ct_assets_tests.app.ui_story import CHROMIUM, walk_the_story
from ct_assets_tests.conftest import free_ports, write_flights_variant

BIN = Path(sys.executable).parent
BUDGET_SECONDS = 900  # the demo shows the loop within ten minutes (about 6 on a quiet 2-core machine)
RULES = {"performance", "drift"}
DECISIONS = {"switch", "rollback"}


def _audit(path: Path) -> list[dict[str, Any]]:
    """The audit log's entries, each with its details beside its action (as `ct status` reads them)."""
    if not path.exists():
        return []
    return [flat(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _rule_retrains(home: Path) -> list[dict[str, str]]:
    """Retrain runs the loop's rules requested (tags of the runs in the instance)."""
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        found = instance.get_runs(filters=dg.RunsFilter(job_name="flights_delay_retrain"))
        return [dict(r.tags) for r in found if r.tags.get("ct/trigger") in RULES]
    finally:
        instance.dispose()


def _decided_canaries(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rollout decisions (switch or automatic rollback) taken after a canary of the same bento."""
    canaried = {e["bento"] for e in audit if e.get("action") == "canary" and e.get("bento")}
    return [e for e in audit if e.get("action") in DECISIONS and e.get("bento") in canaried]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CT_HOME", str(home))
    for variable in ("CT_PIPELINES_DIR", "CT_BUILTIN_PIPELINES", "CT_WAREHOUSE", "CT_LANDING"):
        monkeypatch.delenv(variable, raising=False)
    return home


def test_landing_days_writes_each_day_s_flights_and_the_context_tables(
    tmp_path: Path, flights_spec: PipelineSpec
) -> None:
    landing = tmp_path / "landing"
    days = ["2013-01-02", "2013-01-01"]

    written = land_days(flights_spec, days, landing)

    assert written == [landing / flights_spec.name / f"{day}.csv" for day in days]
    for day, path in zip(days, written, strict=True):
        flight_ids = pd.read_csv(path, usecols=["flight_id"])["flight_id"]
        assert len(flight_ids) > 500 and flight_ids.str.startswith(f"{day}/").all(), path
    context = landing / flights_spec.name / "_context"
    assert sorted(p.stem for p in context.iterdir()) == sorted(flights_spec.context_tables)


def test_a_day_already_landed_is_kept_and_a_day_outside_the_data_is_refused(
    tmp_path: Path, flights_spec: PipelineSpec
) -> None:
    landing = tmp_path / "landing"
    users_file = landing / flights_spec.name / "2013-01-01.csv"
    users_file.parent.mkdir(parents=True)
    users_file.write_text("flight_id\nmine\n")
    assert land_days(flights_spec, ["2013-01-01"], landing) == [users_file]
    assert users_file.read_text() == "flight_id\nmine\n"
    with pytest.raises(ValueError, match="no flights on 2014-01-01"):
        land_days(flights_spec, ["2014-01-01"], landing)


def test_only_a_demo_source_can_be_landed(tmp_path: Path) -> None:
    files_spec = load_spec(
        write_flights_variant(tmp_path / "own", {"source.kind": "files", "source.demo_dataset": None})
    )
    with pytest.raises(ValueError) as refused:
        land_days(files_spec, ["2013-01-01"], tmp_path / "landing")
    assert str(refused.value) == (
        "pipeline flights_delay reads its own files; only demo sources can be landed"
    )
    assert not (tmp_path / "landing").exists(), "nothing written"


def test_the_data_layer_is_the_partitioned_path_to_features_and_the_unpartitioned_context(
    home: Path, flights_spec: PipelineSpec
) -> None:
    assets = data_assets(flights_spec)
    by_name = {key.path[-1]: asset for asset in assets for key in asset.keys}

    context = {names.context_asset(table) for table in flights_spec.context_tables}
    feature_groups = {names.group_asset(group.name) for group in groups(flights_spec)}
    assert set(by_name) == {"raw", "validated", "quarantine", "features"} | context | feature_groups
    assert all(key.path[0] == flights_spec.name for asset in assets for key in asset.keys)
    unpartitioned = {name for name, asset in by_name.items() if asset.partitions_def is None}
    assert unpartitioned == context, "the context tables alone are materialized without a partition"


def test_a_partition_with_no_landing_file_is_reported_as_failed_not_raised(
    home: Path, flights_spec: PipelineSpec
) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        counts = materialize_partition(flights_spec, "2013-01-05", instance)
        runs = instance.get_runs()
    assert counts == PartitionCounts(
        "2013-01-05", rows=0, valid=0, quarantined=0, features=0, succeeded=False
    )
    assert [run.status for run in runs] == [dg.DagsterRunStatus.FAILURE]


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.timeout(BUDGET_SECONDS + 600)
def test_the_default_demo_serves_a_champion_and_a_rule_retrain_reaches_a_canary_decision(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    ui, proxy_port, blue, green = free_ports(4)
    pipelines = tmp_path / "pipelines"
    write_flights_variant(
        pipelines / "flights_delay",
        {"serving.proxy_port": proxy_port, "serving.blue_port": blue, "serving.green_port": green},
        keep_order=True,  # the built-in spec's feature order: the demo's own model
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_", "DAGSTER_"))}
    env |= {"CT_HOME": str(home), "CT_PIPELINES_DIR": str(pipelines), "CT_BUILTIN_PIPELINES": "0"}
    log = tmp_path / "demo.log"
    audit_file = home / "audit.jsonl"
    progress_file = home / "live" / "replay.json"
    started = time.monotonic()
    with log.open("w") as out:
        demo = subprocess.Popen(
            [str(BIN / "ct"), "demo", "--port", str(ui)],
            env=env,
            cwd=settings.REPO_ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        seen: dict[str, float] = {}
        while time.monotonic() - started < BUDGET_SECONDS:
            assert demo.poll() is None, f"ct demo exited with {demo.returncode}:\n{log.read_text()[-3000:]}"
            progress = json.loads(progress_file.read_text()) if progress_file.exists() else {}
            if progress.get("model_versions"):
                seen.setdefault("served", time.monotonic() - started)
            if _decided_canaries(_audit(audit_file)) and _rule_retrains(home):
                seen.setdefault("decided", time.monotonic() - started)
            if len(seen) == 2:
                break
            time.sleep(5)
        assert len(seen) == 2, f"within {BUDGET_SECONDS} s only {seen}:\n{log.read_text()[-4000:]}"
        if CHROMIUM.exists():
            walk_the_story(f"http://127.0.0.1:{ui}", env, tmp_path)
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        if demo.poll() is None:  # a failed wait: stop as Ctrl-C does (it stops Dagster's own sessions too)
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(timeout=240)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(timeout=30)
    text = log.read_text()
    progress = json.loads(progress_file.read_text())
    assert progress["served"] > 0 and progress["rejected"] == 0
    assert set(progress["model_versions"]) and all(v.startswith("v") for v in progress["model_versions"])
    retrain = _rule_retrains(home)[0]
    assert retrain["ct/reason"], "a rule's retrain carries its reason"
    assert f"retrain requested by the {retrain['ct/trigger']} rule" in text, "the terminal says which rule"
    assert "__ASSET_JOB" not in text
    decision = _decided_canaries(_audit(audit_file))[0]
    assert decision["why"], "a switch or rollback says why"
    assert "rollout: " in text and f" {decision['action']} " in text
    assert not _listening(ui) and not _listening(proxy_port)
    assert not _processes_mentioning(str(home)), "every process of the demo is gone"
    print(f"demo timeline on a fresh home: {seen}")
