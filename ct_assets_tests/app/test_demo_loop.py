"""The default demo's first minutes on a fresh home, as `bash scripts/demo.sh` runs them: the
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

import pytest

from ct_assets.lib.core import settings
from ct_assets.lib.core.audit import flat
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
    import dagster as dg

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


@pytest.mark.slow
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
