"""Log files as they are written: a file is never reopened (the next segment instead), and a table
joins an open stream only when its schema differs by columns that are all nulls."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ct_assets.lib.serving import prediction_log
from ct_assets.lib.serving.prediction_log_stream import fitted, typed_nulls, write_now
from ct_assets_tests.lib.serving.conftest import logged_batch


def test_each_write_now_starts_the_next_free_segment(tmp_path: Path) -> None:
    paths = [write_now(tmp_path, "flights", "blue", [logged_batch(f"r{n}", 1.0)]) for n in range(3)]
    assert [p.name.split(".", 1)[1] for p in paths] == ["arrows", "1.arrows", "2.arrows"]
    assert prediction_log.log_files(tmp_path) == paths
    assert [r["request_id"] for p in paths for r in prediction_log.read_requests(p)] == ["r0", "r1", "r2"]
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o600}, "callers' inputs: the owner's alone"


def test_only_all_null_columns_are_cast_to_the_stream_schema() -> None:
    schema = pa.schema([("a", pa.string()), ("b", pa.float64())])
    nulls = pa.table({"a": ["x"], "b": pa.nulls(1)})
    assert fitted(nulls, schema).schema == schema
    assert fitted(pa.table({"a": ["x"], "b": ["007"]}), schema) is None  # a value-changing cast
    assert fitted(pa.table({"a": ["x"], "c": [1.0]}), schema) is None  # other columns
    other = pa.table({"a": pa.nulls(1), "b": ["007"], "c": pa.nulls(1)})
    assert typed_nulls(other, schema).schema == pa.schema(
        [("a", pa.string()), ("b", pa.string()), ("c", pa.null())]
    )
