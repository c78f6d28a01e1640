"""Quiet serving logs: a client error becomes one INFO line with its request id and a short message;
a server fault keeps its ERROR level and traceback; request ids are the caller's when plain."""

from __future__ import annotations

import logging
import sys

import pydantic
import pytest
from bentoml.exceptions import BadInput, InternalServerError

from ct_assets.lib.serving import quiet_log


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        quiet_log.BENTOML_LOGGER,
        logging.ERROR,
        __file__,
        1,
        "Exception on %s [%s]",
        ("/predict", "POST"),
        exc_info,
    )


def test_a_client_error_becomes_one_info_line_with_the_request_id() -> None:
    token = quiet_log.REQUEST_ID.set("req-42")
    try:
        record = _record(BadInput("row 3: field 'distance' must be a number\n" + "x" * 1000))
        assert quiet_log.ClientErrorsAsOneLine().filter(record)
    finally:
        quiet_log.REQUEST_ID.reset(token)
    text = record.getMessage()
    assert record.levelno == logging.INFO and record.exc_info is None
    assert text.startswith("refused POST /predict (400) request_id=req-42: row 3: field 'distance'")
    assert "\n" not in text and text.endswith("…")
    assert len(text) < quiet_log.MESSAGE_CHARS + 80


def test_a_validation_error_is_a_client_error() -> None:
    class Body(pydantic.BaseModel):
        rows: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Body(rows="many")  # type: ignore[arg-type]
    assert quiet_log.client_error_status(caught.value) == 400


def test_a_server_fault_keeps_its_level_and_traceback() -> None:
    record = _record(InternalServerError("the model file is gone"))
    assert quiet_log.ClientErrorsAsOneLine().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert quiet_log.client_error_status(RuntimeError("boom")) is None
    assert quiet_log.client_error_status(None) is None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("", False),
        (None, False),
        ("a b", False),
        ("é", False),
        ("x" * 65, False),
        ("\x1b[31m", False),
    ],
)
def test_a_request_id_is_the_callers_only_when_short_and_plain(given: str | None, kept: bool) -> None:
    made = quiet_log.new_request_id(given)
    assert (made == given) is kept
    assert made.isascii() and made.isprintable() and 0 < len(made) <= 64


def test_install_puts_the_filter_on_once() -> None:
    logger = logging.getLogger(quiet_log.BENTOML_LOGGER)
    quiet_log.install()
    quiet_log.install()
    assert sum(isinstance(f, quiet_log.ClientErrorsAsOneLine) for f in logger.filters) == 1
