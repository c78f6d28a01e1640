"""Typed records read from JSON files: a damaged file is refused naming the file and the fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from ct_assets.lib.core.stored_json import DamagedRecord, read_record


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: int
    y: int = 0


def test_a_valid_file_reads_as_its_type(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"x": 3}')
    assert read_record(Point, path, "point") == Point(x=3, y=0)


def test_every_wrong_field_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"y": "up", "z": 1}')
    with pytest.raises(DamagedRecord) as caught:
        read_record(Point, path, "point")
    message = str(caught.value)
    assert message.startswith(f"{path} is not a valid point: ") and "\n" not in message
    assert "x: Field required" in message and "y: Input should be a valid integer" in message
    assert "z: Extra inputs are not permitted" in message


def test_a_file_that_is_not_json_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("{half")
    with pytest.raises(DamagedRecord, match=r"p\.json is not a valid point: the file: Invalid JSON"):
        read_record(Point, path, "point")
