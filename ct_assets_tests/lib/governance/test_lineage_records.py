"""The lineage's links as records: each broken link gives one readable sentence naming the file or
version, an intact walk gives none, and the records read back whole from their JSON."""

from __future__ import annotations

from ct_assets.lib.governance.lineage import render
from ct_assets.lib.governance.lineage_records import (
    DatasetLink,
    Lineage,
    ModelLink,
    PartitionLink,
    PredictionLink,
    RawFileLink,
    RequestLink,
)

SHA = "a" * 64


def _file(**changes: object) -> RawFileLink:
    figures = {"path": "/landing/2013-01-02.csv", "sha256": SHA, "rows": 10, "exists": True}
    figures |= {"sha256_now": SHA, "matches": True, "in_raw_tags_now": True, "raw_rows_now": 10}
    return RawFileLink(**{**figures, **changes})


def _lineage(file: RawFileLink, artifact_matches: bool = True, dataset_exists: bool = True) -> Lineage:
    return Lineage(
        pipeline="p",
        model=ModelLink(
            version="v0001",
            registered_at="2013-01-03T00:00:00+00:00",
            model_sha256=SHA,
            artifact="/registry/models/a.cbm",
            artifact_exists=True,
            artifact_matches=artifact_matches,
            verdict_passed=True,
            feature_version="f1",
            code_version="c1",
            is_champion=True,
        ),
        dataset=DatasetLink(
            version="d1",
            path="/registry/datasets/d1.parquet",
            rows={"train": 10},
            exists=dataset_exists,
            content_hash_now="d1" if dataset_exists else None,
            matches=dataset_exists,
        ),
        partitions=[PartitionLink(key="2013-01-02", split="train", files=[file], raw_rows_now=10)],
        warehouse_compared=True,
    )


def test_an_intact_walk_has_no_problems_and_reads_back_from_json() -> None:
    lineage = _lineage(_file())
    assert lineage.problems() == []
    assert Lineage.model_validate(lineage.model_dump(mode="json")) == lineage
    assert render(lineage).endswith("every hash matches")


def test_each_broken_link_is_named_once() -> None:
    changed = _lineage(_file(sha256_now="b" * 64, matches=False))
    assert changed.problems() == [
        "partition 2013-01-02 (train): raw file /landing/2013-01-02.csv now hashes to bbbbbbbbbbbb, "
        "recorded aaaaaaaaaaaa at training (changed since)"
    ]
    gone = _lineage(_file(exists=False, sha256_now=None, matches=False, in_raw_tags_now=False))
    assert gone.partition_problems() == [
        "partition 2013-01-02 (train): raw file /landing/2013-01-02.csv is missing",
        "partition 2013-01-02 (train): the warehouse's raw_tags no longer list /landing/2013-01-02.csv "
        "with sha256 aaaaaaaaaaaa (re-ingested or deleted since training)",
    ]
    emptied = _lineage(_file(raw_rows_now=0))
    assert emptied.problems() == [
        "partition 2013-01-02 (train): no raw rows from /landing/2013-01-02.csv "
        "with its recorded sha256 are left"
    ]
    broken = _lineage(_file(), artifact_matches=False, dataset_exists=False)
    assert [p.split(":")[0] for p in broken.problems()] == ["model v0001", "dataset d1"]
    assert "BROKEN LINKS" in render(broken)


def test_a_refit_says_which_candidate_it_refits() -> None:
    lineage = _lineage(_file())
    refit = lineage.model_copy(update={"model": lineage.model.model_copy(update={"refit_of": "v0001"})})
    assert "model v0001  sha256 aaaaaaaaaaaaaaaa  artifact ok  (refit of v0001)  (champion)" in render(refit)
    assert Lineage.model_validate(refit.model_dump(mode="json")).model.refit_of == "v0001"


def test_a_refit_s_tree_says_it_trained_on_its_candidate_s_holdout() -> None:
    lineage = _lineage(_file())
    holdout = lineage.partitions[0].model_copy(update={"key": "2013-01-03", "split": "holdout"})
    lineage = lineage.model_copy(update={"partitions": [*lineage.partitions, holdout]})
    assert "partition 2013-01-03 (holdout)" in render(lineage)
    refit = lineage.model_copy(update={"model": lineage.model.model_copy(update={"refit_of": "v0001"})})
    shown = render(refit)
    assert "partition 2013-01-02 (train)" in shown
    assert "partition 2013-01-03 (v0001's holdout, trained on by the refit)" in shown


def test_an_uncompared_warehouse_is_no_problem_and_is_said() -> None:
    lineage = _lineage(_file(in_raw_tags_now=None, raw_rows_now=None))
    assert lineage.problems() == []
    uncompared = lineage.model_copy(update={"warehouse_compared": False})
    assert "(warehouse not opened" in render(uncompared)


def _rendered_request(predictions: list[PredictionLink]) -> str:
    """The tree of a lineage led by a request of r1 that answered `predictions`."""
    request = RequestLink(
        request_id="r1",
        pipeline="p",
        time="2013-01-03T00:00:00+00:00",
        slot="blue",
        model_version="v0001",
        bento="p_service:v0001",
        log_file="/log/p/blue/1.arrow",
        predictions=predictions,
    )
    return render(_lineage(_file()).model_copy(update={"request": request}))


def test_the_tree_escapes_control_characters_in_logged_entity_ids() -> None:
    text = _rendered_request([PredictionLink(entity_id="evil\n\x1b[31mred", score=0.25, decision=False)])
    assert "\x1b" not in text and "evil\\n\\x1b[31mred: score 0.2500" in text


def test_a_request_id_sent_with_two_calls_names_each_call() -> None:
    def prediction(entity: str, time: str, version: str) -> PredictionLink:
        return PredictionLink(entity_id=entity, score=0.5, decision=True, time=time, model_version=version)

    calls = [
        prediction("Q1", "2013-01-03T00:00:00+00:00", "v0001"),
        prediction("Q2", "2013-01-04T00:00:00+00:00", "v0002"),
    ]
    text = _rendered_request(calls)
    assert "the id was sent with 2 calls, 2013-01-03T00:00:00+00:00 to 2013-01-04T00:00:00+00:00" in text
    assert "Q2: score 0.5000 decision True  (2013-01-04T00:00:00+00:00, model v0002)" in text
    assert "calls" not in _rendered_request(calls[:1])
