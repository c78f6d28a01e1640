"""Redaction: secret-named environment values and secret-named keys never reach a log."""

from __future__ import annotations

import pytest

from ct_assets.lib.core.redaction import REDACTED, redact, secret_values

ENV = {
    "CT_OPERATOR_TOKEN": "tok-123456",
    "DAGSTER_PG_PASSWORD": "pg-secret-longer",
    "CT_ALERT_WEBHOOK": "https://hooks.example/abc",
    "MY_API_KEY": "k" * 8,
    "SHORT_SECRET": "abc",  # too short to replace in free text
    "HOME": "/root/not-a-secret",
}


def test_secret_values_are_the_secret_named_ones_longest_first() -> None:
    assert secret_values(ENV) == [
        "https://hooks.example/abc",
        "pg-secret-longer",
        "tok-123456",
        "kkkkkkkk",
    ]


def test_secret_values_read_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CT_TEST_TOKEN", "from-the-env-123")
    assert "from-the-env-123" in secret_values()
    assert redact("header from-the-env-123") == f"header {REDACTED}"


def test_strings_lose_every_secret_and_keep_the_rest() -> None:
    secrets = secret_values(ENV)
    text = "posted to https://hooks.example/abc with tok-123456 as /root/not-a-secret (abc)"
    assert redact(text, secrets) == f"posted to {REDACTED} with {REDACTED} as /root/not-a-secret (abc)"


def test_nested_values_and_secret_named_keys() -> None:
    value = {
        "why": "rolled back by tok-123456",
        "token": "anything at all",
        "password": "",
        "Authorization": None,
        "details": [{"api_key": "x"}, ("tok-123456", 3)],
        "count": 7,
    }
    assert redact(value, ["tok-123456"]) == {
        "why": f"rolled back by {REDACTED}",
        "token": REDACTED,
        "password": "",  # nothing to hide
        "Authorization": None,
        "details": [{"api_key": REDACTED}, [REDACTED, 3]],
        "count": 7,
    }
    assert value["token"] == "anything at all"  # the input is not changed
