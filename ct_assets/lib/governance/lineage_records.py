"""The links of a lineage walk as typed records, from a served request down to the raw files, and
the broken links they show. `ct lineage --json` and the audit chain check read these records;
they become JSON only when printed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Link(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RawFileLink(_Link):
    """One raw landing file as recorded at training time, and as found now."""

    path: str
    sha256: str
    rows: int | None
    exists: bool
    sha256_now: str | None
    matches: bool
    in_raw_tags_now: bool | None = None  # None: the warehouse was not compared
    raw_rows_now: int | None = None  # rows from this file with its recorded sha256 left in `raw`


class PartitionLink(_Link):
    """One partition of the training set, its split and the raw files it was ingested from."""

    key: str
    split: str
    files: list[RawFileLink]
    raw_rows_now: int | None = None  # None: the warehouse was not compared
    raw_tags_now: dict[str, str] | None = None  # path -> sha256 the warehouse lists now

    def problems(self) -> list[str]:
        where = f"partition {self.key} ({self.split})"
        found = [] if self.files else [f"{where}: no raw files recorded for it"]
        for item in self.files:
            if not item.exists:
                found.append(f"{where}: raw file {item.path} is missing")
            elif not item.matches:
                found.append(
                    f"{where}: raw file {item.path} now hashes to {(item.sha256_now or '')[:12]}, recorded "
                    f"{item.sha256[:12]} at training (changed since)"
                )
            if item.in_raw_tags_now is False:
                found.append(
                    f"{where}: the warehouse's raw_tags no longer list {item.path} with sha256 "
                    f"{item.sha256[:12]} (re-ingested or deleted since training)"
                )
            elif item.raw_rows_now == 0:
                found.append(f"{where}: no raw rows from {item.path} with its recorded sha256 are left")
        return found


class ModelLink(_Link):
    """The model version, its artifact (re-hashed now) and where it came from."""

    version: str
    registered_at: str
    model_sha256: str
    artifact: str
    artifact_exists: bool
    artifact_matches: bool
    verdict_passed: bool | None  # a refit carries the verdict of the candidate it refits
    refit_of: str | None = None
    feature_version: str
    code_version: str
    is_champion: bool

    def problems(self) -> list[str]:
        if not self.artifact_exists:
            return [f"model {self.version}: artifact {self.artifact} is missing"]
        if not self.artifact_matches:
            return [
                f"model {self.version}: artifact {self.artifact} no longer hashes to its recorded "
                f"sha256 {self.model_sha256[:12]}"
            ]
        return []


class DatasetLink(_Link):
    """The frozen training set: its version (content hash) and whether its content still hashes to it."""

    version: str
    path: str
    rows: dict[str, int]
    exists: bool
    content_hash_now: str | None
    matches: bool

    def problems(self) -> list[str]:
        if not self.exists:
            return [f"dataset {self.version}: frozen training set {self.path} is missing"]
        if not self.matches:
            return [
                f"dataset {self.version}: {self.path} now hashes to {self.content_hash_now} "
                "(its content changed since the model was trained)"
            ]
        return []


class PredictionLink(_Link):
    entity_id: Any
    score: float | None
    decision: bool | None
    time: str | None = None  # the call that answered it (a caller may reuse a request id)
    model_version: str | None = None


class RequestLink(_Link):
    """A served request: when, by which slot and model, and what it answered."""

    request_id: str
    pipeline: str
    time: str | None
    slot: str | None
    model_version: str | None
    bento: str
    log_file: str
    predictions: list[PredictionLink]


class Lineage(_Link):
    """A model version's lineage down to the raw files, led by the request when walked from one."""

    request: RequestLink | None = None
    pipeline: str
    model: ModelLink
    dataset: DatasetLink
    partitions: list[PartitionLink]
    warehouse_compared: bool
    # The lineages of the other models that answered calls with the request's id (a caller may
    # reuse one id across a rollout), in the order of their first call.
    other_models: list[Lineage] = []

    def problems(self) -> list[str]:
        """Every broken link, as readable sentences (empty: every hash matched)."""
        own = self.model.problems() + self.dataset.problems() + self.partition_problems()
        return own + [problem for other in self.other_models for problem in other.problems()]

    def partition_problems(self) -> list[str]:
        return [problem for partition in self.partitions for problem in partition.problems()]
