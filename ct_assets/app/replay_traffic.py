"""The live demo's traffic: plays a demo pipeline day by day as a caller and a data feed would.

Before the first replayed day it can land a stretch of history at once (no requests: nothing serves
yet), so the first model trains on it. For each replayed day it sends that day's events to the
stable serving URL as prediction requests, spread over the day's slot of wall time, then lands the
day's file (with its labels) for the landing sensor. The replay is paced by the loop: a day does
not end before the loop has finished ingesting the day before it (`ready`); while it waits, the
day's last requests keep trickling out. Progress is saved after every batch, so a stopped replay
resumes where it stopped without sending a batch twice or landing a day twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data import demo_source
from ct_assets.lib.data.landing import write_atomically
from ct_assets.lib.serving.request_parsing import request_columns


@dataclass
class ReplayProgress:
    """What has been played; saved after every batch."""

    next_day: str
    batches_sent: int = 0  # of next_day
    served: int = 0  # rows answered with a prediction
    rejected: int = 0  # rows refused with a 4xx (should stay 0 for real data)
    unavailable: int = 0  # rows sent while no model was serving (no champion yet) or on 5xx
    days_landed: list[str] = field(default_factory=list)
    model_versions: dict[str, int] = field(default_factory=dict)  # rows answered per model version


class ProgressFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, first_day: str) -> ReplayProgress:
        if self.path.exists():
            return ReplayProgress(**json.loads(self.path.read_text()))
        return ReplayProgress(next_day=first_day)

    def save(self, progress: ReplayProgress) -> None:
        write_atomically(self.path, json.dumps(asdict(progress), indent=1).encode())


def day_requests(spec: PipelineSpec, day: str) -> list[dict[str, Any]]:
    """The day's events as a caller knows them before they happen (no label, no post-event fields),
    in scheduled order, JSON-ready."""
    frame = demo_source.flights()
    rows = frame[frame["_local_date"] == day]
    if rows.empty:
        return []
    rows = rows.sort_values(spec.timestamp_column, kind="stable")
    fields = list(request_columns(spec))
    return json.loads(rows[fields].to_json(orient="records", date_format="iso"))


def batches(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class ReplayDriver:
    """Plays days from the progress file's `next_day` on; `stop()` ends it after the current batch."""

    def __init__(
        self,
        spec: PipelineSpec,
        stable_url: str,
        landing_root: Path,
        progress_path: Path,
        seconds_per_day: float,
        batch_rows: int = 3,
        timeout: float = 10.0,
        ready: Callable[[str], bool] | None = None,
        max_wait_seconds: float = 600.0,
        first_day: str | None = None,
    ) -> None:
        self.spec = spec
        self.url = stable_url.rstrip("/") + "/predict"
        self.landing_root = Path(landing_root)
        self.progress_file = ProgressFile(progress_path)
        self.seconds_per_day = seconds_per_day
        self.batch_rows = batch_rows
        self.timeout = timeout
        self.ready = ready or (lambda day: True)
        self.max_wait_seconds = max_wait_seconds
        self.progress = self.progress_file.load(first_day or spec.partitions.start.isoformat())
        self._stopping = False

    def land_history(self, days: list[str]) -> list[str]:
        """Land `days` at once, before the replay (their labels are history: no request is sent);
        returns the days landed now (none when they were landed before or a day is half played)."""
        progress = self.progress
        todo = [day for day in days if day not in progress.days_landed]
        if progress.batches_sent or not todo:
            return []
        demo_source.land_context(self.landing_root, self.spec.name, list(self.spec.context_tables))
        for day in todo:
            demo_source.land_day(self.landing_root, self.spec.name, day)
            progress.days_landed.append(day)
        after = (date.fromisoformat(todo[-1]) + timedelta(days=1)).isoformat()
        progress.next_day = max(progress.next_day, after)
        self.progress_file.save(progress)
        return todo

    def stop(self) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def play(self, last_day: str, on_batch: Callable[[ReplayProgress], None] | None = None) -> ReplayProgress:
        """Play every day up to and including `last_day` (or until stopped)."""

        demo_source.land_context(self.landing_root, self.spec.name, list(self.spec.context_tables))
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stopping and self.progress.next_day <= last_day:
                self._play_day(client, self.progress.next_day, on_batch)
        return self.progress

    def keep_serving(self, day: str, busy: Callable[[], bool]) -> None:
        """After the last day: send `day`'s requests again, at the day's pace, for as long as
        `busy()` says the loop still retrains or rolls out, so that a canary started after the last
        day is judged on live traffic too. Nothing lands; the answers count as served."""

        groups = batches(day_requests(self.spec, day), self.batch_rows)
        if not groups:
            return
        pause = self.seconds_per_day / len(groups)
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stopping and busy():
                for batch in groups:
                    if self._stopping:
                        return
                    started = time.monotonic()
                    self._send(client, batch)
                    self.progress_file.save(self.progress)
                    time.sleep(max(0.0, pause - (time.monotonic() - started)))

    def _previous_day_done(self, day: str) -> bool:
        previous = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        return previous not in self.progress.days_landed or self.ready(previous)

    def _play_day(self, client: Any, day: str, on_batch: Callable[[ReplayProgress], None] | None) -> None:
        groups = batches(day_requests(self.spec, day), self.batch_rows)
        pause = self.seconds_per_day / max(len(groups), 1)
        reserve = len(groups) // 4  # the last quarter goes at half pace while the loop catches up
        progress = self.progress
        for index, batch in enumerate(groups[progress.batches_sent :], start=progress.batches_sent):
            if self._stopping:
                return
            started = time.monotonic()
            self._send(client, batch)
            progress.batches_sent += 1
            self.progress_file.save(progress)
            if on_batch:
                on_batch(progress)
            slow = index >= len(groups) - reserve and not self._previous_day_done(day)
            time.sleep(max(0.0, (pause * (2 if slow else 1)) - (time.monotonic() - started)))
        waited = time.monotonic()
        while not self._stopping and not self._previous_day_done(day):
            if time.monotonic() - waited > self.max_wait_seconds:
                break  # the loop is stuck (see the UI): the replay goes on rather than hang
            time.sleep(1)
        if self._stopping:
            return
        # the day is over: its file, labels included, lands for the landing sensor
        demo_source.land_day(self.landing_root, self.spec.name, day)
        progress.days_landed.append(day)
        progress.next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        progress.batches_sent = 0
        self.progress_file.save(progress)
        if on_batch:
            on_batch(progress)

    def _send(self, client: Any, batch: list[dict[str, Any]]) -> None:
        progress = self.progress
        try:
            answer = client.post(self.url, json={"rows": batch})
        except httpx.HTTPError:
            progress.unavailable += len(batch)  # the proxy is not up yet
            return
        if answer.status_code == 200:
            version = answer.json().get("model_version", "?")
            progress.served += len(batch)
            progress.model_versions[version] = progress.model_versions.get(version, 0) + len(batch)
        elif 400 <= answer.status_code < 500 and answer.status_code != 429:
            progress.rejected += len(batch)
        else:
            progress.unavailable += len(batch)
