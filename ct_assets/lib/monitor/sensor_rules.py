"""What a retrain sensor's tick decides, as plain functions: whether a model is needed, the first
model's request, the retrain request and its cooldown. A request carries the decision's evidence
(`ct/evidence_auc`, `ct/evidence_label_rate`, `ct/evidence_drift`) as tags, so the run's page in
the UI says why it was asked for; a skip's reason holds the same lines.

A tick either skips with a readable reason or asks for one training run as of a partition; the
wiring turns a `TrainingRequest` into a Dagster run request and keeps `cursor` as the sensor's cursor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ct_assets.lib.core.spec import MonitoringSpec, TrainingSpec
from ct_assets.lib.model.records import ModelVersion
from ct_assets.lib.monitor.retrain_policy import Decision, Expectation, PartitionSignal, first_model_decision

Decide = Callable[[list[PartitionSignal], Expectation, MonitoringSpec], Decision]
# A tag value holds at most this many characters of the reason.
REASON_CHARS = 900
# A tag value of one piece of evidence holds at most this many characters.
EVIDENCE_CHARS = 200
# Monitored partitions a tick reads: enough for the widest performance window on small partitions.
SIGNAL_HISTORY = 60
# Without an online snapshot check, every partition counts as fully ingested.
ALL_PARTITIONS = "9999"


@dataclass(frozen=True)
class TrainingRequest:
    """One training run as of `as_of`, deduplicated by `run_key`."""

    run_key: str
    as_of: str
    reason: str
    tags: dict[str, str]
    cursor: str | None = None  # the sensor's cursor after the request (None: unchanged)
    alert: str | None = field(default=None)  # the info alert's cause, when the request is announced


def busy(run_id: str) -> str:
    return f"retrain run {run_id[:8]} is already queued or running"


def champion_needed(cause: str, has_champion: bool) -> str | None:
    """The skip reason when this sensor has nothing to compare with: only the performance sensor
    requests the first model."""
    if not has_champion and cause != "performance":
        return "no champion yet: the performance sensor requests the first model"
    return None


def nothing_ingested(complete: str | None) -> str | None:
    if complete is None:
        return "no partition fully ingested yet (no online snapshot published)"
    return None


WAREHOUSE_BUSY = "the warehouse is being written; trying again next tick"


def first_model(rows: list[tuple[str, int]], complete: str, training: TrainingSpec) -> TrainingRequest | str:
    """No champion yet: request the first training as soon as the data allows, once per partition
    (a refused first candidate is retried when the next partition arrives)."""
    rows = [row for row in rows if row[0] <= complete]
    decision = first_model_decision(rows, training)
    if not decision.retrain:
        return decision.reason
    latest = rows[-1][0]
    return TrainingRequest(
        run_key=f"first_model:{latest}",
        as_of=latest,
        reason=decision.reason,
        tags={
            "ct/trigger": "first_model",
            "ct/reason": decision.reason[:REASON_CHARS],
            "ct/partition": latest,
        },
    )


def last_request(cursor: str | None) -> dict[str, Any] | None:
    """The request a retrain sensor's cursor remembers: partition, champion and reason."""
    return json.loads(cursor or "{}").get("last_request")


def signal_count(rules: MonitoringSpec) -> int:
    """How many of the champion's latest monitored partitions a retrain tick reads."""
    return max(rules.confirm_window, rules.performance_window, SIGNAL_HISTORY)


def evidence_tags(decision: Decision) -> dict[str, str]:
    """The decision's evidence as run tags (`ct/evidence_auc`, ...), one short line each."""
    return {f"ct/evidence_{name}": text[:EVIDENCE_CHARS] for name, text in decision.evidence.items()}


def retrain(
    cause: str,
    decide: Decide,
    signals: list[PartitionSignal],
    record: ModelVersion,
    rules: MonitoringSpec,
    last: dict[str, Any] | None,
    since: int,
) -> TrainingRequest | str:
    """Apply the rule to the champion's recent signals and honour the cooldown: `since` monitored
    partitions came after the last request, which counts only if it was for this champion."""
    champion = record.version
    if not signals:
        return f"no monitored partitions for champion {champion} yet"
    decision = decide(signals, Expectation.of(record), rules)
    latest = signals[-1].partition
    if not decision.retrain:
        return f"{latest}: {decision.reason}"
    if last and last.get("champion") == champion and since < rules.cooldown_partitions:
        return (
            f"{latest}: {decision.reason}; cooling down ({since} of "
            f"{rules.cooldown_partitions} partitions since the request on {last['partition']})"
        )
    return TrainingRequest(
        run_key=f"{cause}:{latest}:{champion}",
        as_of=latest,
        reason=decision.reason,
        tags={
            "ct/trigger": cause,
            "ct/reason": decision.reason[:REASON_CHARS],
            "ct/partition": latest,
            "ct/champion": champion,
            **evidence_tags(decision),
        },
        cursor=json.dumps(
            {"last_request": {"partition": latest, "champion": champion, "reason": decision.reason}}
        ),
        alert=f"retrain requested by the {cause} sensor: {decision.reason}",
    )
