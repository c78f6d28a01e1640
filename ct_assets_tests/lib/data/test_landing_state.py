"""The landing sensor's state machine with plain keys and fingerprints."""

from pathlib import Path

from ct_assets.lib.data import landing_state
from ct_assets.lib.data.landing_names import Misnamed

ORDER = ["d1", "d2", "d3", "d4", "d5"]


def test_new_then_unchanged_then_changed_files() -> None:
    cursor = landing_state.parse(None)
    first = landing_state.pending(cursor, [("d1", "a"), ("d2", "b")], set(), 2)
    assert first == [("d1", "d1:a"), ("d2", "d2:b")]
    assert landing_state.pending(cursor, [("d1", "a"), ("d2", "b")], {"d1", "d2"}, 2) == []
    assert landing_state.pending(cursor, [("d1", "c"), ("d2", "b")], {"d1", "d2"}, 2) == [("d1", "d1:c")]
    assert landing_state.parse(landing_state.dump(cursor))["seen"] == {"d1": "c", "d2": "b"}


def test_files_already_ingested_by_another_run_are_only_marked_seen() -> None:
    cursor = landing_state.parse(None)
    landed = [("d1", "a"), ("d2", "b"), ("d3", "c")]
    ingested_from = {"d1": "a", "d2": "old"}  # d2's files changed since its ingest; d3 never ingested
    found = landing_state.pending(cursor, landed, {"d1", "d2"}, 2, ingested_from)
    assert found == [("d2", "d2:b"), ("d3", "d3:c")]
    assert cursor["seen"] == {"d1": "a", "d2": "b", "d3": "c"}
    assert (
        landing_state.fingerprint_of(["0123456789abcdef" + "f" * 48, "a" * 64])
        == "0123456789abcdef," + "a" * 16
    )


def test_a_lost_ingest_is_retried_up_to_the_limit() -> None:
    cursor: dict = {}
    landed = [("d1", "a")]
    parts = [landing_state.pending(cursor, landed, set(), 2) for _ in range(4)]
    assert parts == [[("d1", "d1:a")], [("d1", "d1:a:retry1")], [("d1", "d1:a:retry2")], []]


def test_consecutive_partitions_go_in_one_range_run() -> None:
    items = [("d1", "d1:a"), ("d2", "d2:b"), ("d4", "d4:c")]
    runs = landing_state.partition_runs(items, ORDER)
    assert [(r.first, r.last, r.single) for r in runs] == [("d1", "d2", False), ("d4", "d4", True)]
    assert runs[0].run_key == f"d1...d2:{landing_state.digest(['d1:a', 'd2:b'])}"
    assert runs[1].run_key == "d4:c"


def test_in_order_drops_unknown_keys() -> None:
    assert landing_state.in_order(["d3", "x", "d1"], ORDER) == ["d1", "d3"]


def test_context_changes_are_noticed_once(tmp_path: Path) -> None:
    path = tmp_path / "weather.csv"
    path.write_text("a\n1\n")
    cursor: dict = {}
    print_ = landing_state.fingerprint([path])
    assert landing_state.context_changed(cursor, print_) == f"context:{print_}"
    assert landing_state.context_changed(cursor, print_) is None
    path.write_text("a\n2\n")
    assert landing_state.context_changed(cursor, landing_state.fingerprint([path])) is not None


def test_a_misnamed_file_is_named_once_while_it_stays() -> None:
    tuesday, later = Misnamed(Path("w/2017-01-03.csv"), "why"), Misnamed(Path("w/x.csv"), "why")
    cursor = landing_state.parse(None)
    assert landing_state.newly_misnamed(cursor, []) == [] and "misnamed" not in cursor
    assert landing_state.newly_misnamed(cursor, [tuesday]) == [tuesday]
    cursor = landing_state.parse(landing_state.dump(cursor))
    assert landing_state.newly_misnamed(cursor, [tuesday]) == []
    assert landing_state.newly_misnamed(cursor, [tuesday, later]) == [later]
    assert landing_state.newly_misnamed(cursor, []) == [] and cursor["misnamed"] == []
    assert landing_state.newly_misnamed(cursor, [tuesday]) == [tuesday]  # renamed away and back
