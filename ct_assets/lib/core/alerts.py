"""Alerts: tiered (info, warning, critical), owned, and written to a sink a person reads."""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Tier = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Alert:
    """An alert names the pipeline, the partition, the cause and what to do."""

    tier: Tier
    pipeline: str
    partition: str | None
    cause: str
    action: str
    owner: str
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def __str__(self) -> str:
        where = f" {self.partition}" if self.partition else ""
        return (
            f"[{self.tier.upper()}] {self.pipeline}{where}: {self.cause}. {self.action} (owner {self.owner})"
        )


def write_jsonl(path: Path, alert: Alert) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as handle:
        handle.write(json.dumps(alert.as_dict(), sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[Alert]:
    if not path.exists():
        return []
    return [Alert(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def post_webhook(url: str, alert: Alert, timeout: float = 5.0) -> int:
    """POST the alert as JSON; returns the HTTP status (raises on network errors or >= 400)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.as_dict()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)
