"""Error answers in one shape: pydantic's errors about a JSON body (from a real pydantic model of the
body, as BentoML builds one per API) worded for the route's envelope, BentoML's one-element list
unwrapped, and every answer an object of one readable line and the request id."""

from __future__ import annotations

from typing import Any

import orjson
import pydantic
import pytest

from ct_assets.lib.serving.error_body import error_json, reshaped


class Rows(pydantic.BaseModel):
    """The body of POST /predict as BentoML reads it."""

    rows: list[Any]
    pipeline: str | None = None


class Columns(pydantic.BaseModel):
    """The body of POST /predict_columns as BentoML reads it."""

    columns: dict[str, Any]
    pipeline: str | None = None


def bentoml_answer(model: type[pydantic.BaseModel], body: bytes) -> bytes:
    """What BentoML answers for a body its API's model refuses."""
    with pytest.raises(pydantic.ValidationError) as error:
        model.model_validate_json(body or b"{}")  # BentoML reads an empty body as no fields
    exc = error.value
    return orjson.dumps(
        {
            "error": f"{exc.error_count()} validation error for {exc.title}",
            "detail": exc.errors(include_context=False, include_input=False),
        }
    )


def shaped(body: bytes, envelope: str | None = "rows", empty: bool = False, status: int = 400) -> dict:
    answer = orjson.loads(reshaped(body, status, envelope, empty, "req-1"))
    assert set(answer) == {"error", "request_id"} and answer["request_id"] == "req-1", answer
    assert isinstance(answer["error"], str) and "\n" not in answer["error"]
    return answer


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", 'the body is empty: the body must be a JSON object {"rows": [...]}'),
        (b"{}", 'the body must be a JSON object {"rows": [...]}: it has no "rows" field'),
        (b"[]", 'the body must be a JSON object {"rows": [...]}'),
        (b'[{"rows": []}]', 'the body must be a JSON object {"rows": [...]}'),
        (b"null", 'the body must be a JSON object {"rows": [...]}'),
        (b"not json", "the body is not valid JSON (expected ident at line 1 column 2): the body must be a"),
        ('{"rows": ["\xe9"]}'.encode("latin-1"), "the body is not valid UTF-8 (invalid unicode code point"),
        (b'{"rows": 5}', "rows must be a non-empty list of objects"),
        (b'{"rows": [], "pipeline": 5}', "pipeline must be a string naming the served pipeline"),
    ],
)
def test_pydantic_errors_about_a_rows_body_read_as_one_line(body: bytes, expected: str) -> None:
    answer = shaped(bentoml_answer(Rows, body), empty=not body)
    assert answer["error"].startswith(expected), answer
    assert "pydantic" not in answer["error"] and "validation error" not in answer["error"]


def test_pydantic_errors_about_a_columns_body_name_columns() -> None:
    missing = shaped(bentoml_answer(Columns, b'{"rows": []}'), envelope="columns")
    assert missing["error"] == 'the body must be a JSON object {"columns": {...}}: it has no "columns" field'
    listed = shaped(bentoml_answer(Columns, b'{"columns": []}'), envelope="columns")
    assert listed["error"] == "columns must be an object mapping each field to a list of values"


def test_other_refusals_keep_their_message_in_the_one_shape() -> None:
    # the service's own check, as BentoML answers an API's InvalidArgument
    listed = orjson.dumps([{"error": "row 0: missing fields ['license_number']"}])
    assert shaped(listed)["error"] == "row 0: missing fields ['license_number']"
    gate = orjson.dumps({"error": "send the body with content-type application/json, got 'text/plain'"})
    assert shaped(gate, status=415)["error"].startswith("send the body with content-type")
    arrow = orjson.dumps({"error": "the Arrow table has no rows: send at least one row"})
    assert shaped(arrow, envelope=None)["error"] == "the Arrow table has no rows: send at least one row"
    assert shaped(b"Too many requests", status=429)["error"] == "Too many requests"
    assert shaped(b"", status=404)["error"] == "not found"


def test_the_message_is_one_line_and_the_id_is_left_out_when_there_is_none() -> None:
    assert orjson.loads(error_json("row 0:\n  bad", None)) == {"error": "row 0: bad"}
    assert len(orjson.loads(error_json("x" * 10_000, "id"))["error"]) == 4001
