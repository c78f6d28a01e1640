"""The audit log: one hash-chained file; edits, deletions and cut-off tails are detected; appends
from concurrent processes never interleave; secrets never reach it."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from pathlib import Path

import pytest

from ct_assets.lib.core import audit
from ct_assets.lib.core.audit import AuditLog
from ct_assets.lib.model.registry import Registry
from ct_assets.lib.serving.proxy import ProxyLayout
from ct_assets.lib.serving.rollout import Deployment
from ct_assets_tests.conftest import trained_model


def _filled(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append("promote", "ann", f"reason {i}", pipeline="p", subject="p/champion", details={"i": i})
    return log


def test_entries_are_chained_and_verify(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev_hash"] == audit.GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert set(entries[0]) == {
        *("seq", "at", "who", "action", "pipeline", "subject", "component", "why", "details"),
        *("prev_hash", "hash"),
    }
    report = log.verify()
    assert report.ok and report.entries == 5 and report.head == entries[-1]["hash"]
    # who did what, and the chain's head: the owner's alone
    assert {oct(p.stat().st_mode & 0o777) for p in (log.path, log.head_path)} == {"0o600"}


def test_an_edited_line_is_named(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["who"] = "mallory"
    lines[2] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    log.path.write_text("\n".join(lines) + "\n")
    report = log.verify()
    assert not report.ok
    assert "audit.jsonl line 3 (seq 3, promote): content does not match its hash" in report.problems[0]


def test_a_deleted_line_and_a_cut_off_tail_are_detected(tmp_path: Path) -> None:
    log = _filled(tmp_path)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    problems = log.verify().problems
    assert any("seq 3 follows seq 1" in p for p in problems)
    assert any("prev_hash does not match" in p for p in problems)

    log.path.write_text("\n".join(lines[:3]) + "\n")  # the last two lines cut off: the chain itself is fine
    problems = log.verify().problems
    assert len(problems) == 1 and "records seq 5" in problems[0] and "ends at seq 3" in problems[0]


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(Path(path))
    for i in range(count):
        log.append("manual", f"worker-{worker}", "concurrency test", details={"i": i, "pad": "x" * 2000})


def test_concurrent_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    log = AuditLog(path)
    report = log.verify()
    assert report.ok, report.problems
    assert report.entries == 160 and [e["seq"] for e in log.entries()] == list(range(1, 161))


def test_secrets_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "planted-operator-token-9f8e7d"
    monkeypatch.setenv("CT_OPERATOR_TOKEN", token)
    monkeypatch.setenv("CT_ALERT_WEBHOOK", "https://hooks.example.com/planted-webhook-secret")
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append(
        "manual",
        "ann",
        f"pasted by mistake: {token}",
        details={"url": "https://hooks.example.com/planted-webhook-secret", "password": "hunter22", "n": 1},
    )
    text = log.path.read_text()
    assert token not in text and "planted-webhook-secret" not in text and "hunter22" not in text
    assert log.entries()[0]["details"]["n"] == 1 and log.verify().ok


def test_registry_and_deployment_share_the_home_log(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry", "p", audit_home=tmp_path)
    version = registry.register(trained_model(model_sha256="x", dataset_version="d"))
    registry.update(version, verdict={"passed": True, "reasons": []})
    registry.promote(version, who="ann", why="first model")
    layout = ProxyLayout(tmp_path / "proxy", 1, {"blue": 2, "green": 3})
    deploy = Deployment(tmp_path / "deploy" / "p", layout, {}, "bentoml", audit_home=tmp_path)
    deploy.audit("approved", "bob", "canary looked fine", slot="blue", bento="p_service:v0001")
    entries = audit.home_log(tmp_path).entries()
    assert [(e["component"], e["subject"], e["who"]) for e in entries] == [
        ("registry", "p/champion", "ann"),
        ("deployment", "p/deployment", "bob"),
    ]
    assert audit.home_log(tmp_path).path == tmp_path / "audit.jsonl" and audit.home_log(tmp_path).verify().ok
    assert registry.audit_log()[0] | {"at": None} == {
        "at": None,
        "action": "promote",
        "who": "ann",
        "why": "first model",
        "version": "v0001",
        "previous": None,
    }
    assert deploy.audit_log()[0]["slot"] == "blue"
