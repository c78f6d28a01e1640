"""Keeping secrets out of logs: secrets reach the code only through environment variables, and
anything written to the audit log (or another log) passes through `redact` first.

A secret is the value of an environment variable whose name says it is one (`CT_OPERATOR_TOKEN`,
`CT_ALERT_WEBHOOK`, `PGPASSWORD`, `DAGSTER_PG_PASSWORD`, anything with TOKEN, PASSWORD, SECRET,
WEBHOOK or API_KEY in its name), and any value stored under a key with such a name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|WEBHOOK|API_?KEY|AUTHORIZATION|CREDENTIAL", re.I)
# Values this short are too likely to occur by chance in ordinary text to be replaced everywhere.
MIN_SECRET_LENGTH = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret-named environment variables, longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of `value` (str, dict, list, scalars) with every secret replaced by `[redacted]`."""
    known = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        for secret in known:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if SECRET_NAME.search(str(k)) and v not in (None, "") else redact(v, known)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, known) for v in value]
    return value
