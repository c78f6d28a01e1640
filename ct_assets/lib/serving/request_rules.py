"""Request rules compiled from the spec: the serving path's checks, without pandas or pandera.

The training path validates a partition with the pandera model that `validation.row_model` builds
from the spec (types, nulls, min/max, allowed values, unique entity ids). A prediction request is
checked against the same spec fields (`ColumnSpec.type`, `nullable`, `min`, `max`, `allowed`), one
column at a time with plain Python (`all`, `min`, `max`, set operations), so a single row costs
microseconds instead of the milliseconds a pandera run costs. A test runs both on the same good and
bad rows and checks that they accept and refuse the same ones. A broken rule is worded for a
request (`describe_violation`): a timestamp outside the range the service accepts says so, a repeated
entity id is repeated in the request; the other rules are worded by `validation._describe_failure`,
the function the quarantine uses.

What a caller may send for each column type (JSON values):
- string: a string; integer: an integer in the 64-bit range, or a float with an integral value;
- float: an integer or a finite float (NaN counts as null, as pandas counts it; infinities, and
  numbers too large for a double, are refused);
- boolean: true or false;
- timestamp: an ISO 8601 string `YYYY-MM-DD[( |T)hh:mm[:ss[.f]]][Z|+hh[:mm]]` (no zone means UTC),
  the forms that both Python's `datetime.fromisoformat` and DuckDB's TIMESTAMPTZ cast read the same
  way, inside the range of pandas timestamps (`TIMESTAMP_WINDOW`, 1677-09-21 to 2262-04-11);
- date: `YYYY-MM-DD`;
- null (JSON null) where the spec allows nulls.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.data.validation import _describe_failure as describe_failure
from ct_assets.lib.serving.request_gate import QUOTE_CHARS, quote

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The timestamps the service accepts (pandas' Timestamp.min/max): ge the first, lt the second.
TIMESTAMP_WINDOW = (
    datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC),
    datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC),
)
ACCEPTED_TIMESTAMPS = "from {:%Y-%m-%d %H:%M:%S.%f} to before {:%Y-%m-%d %H:%M:%S.%f} UTC".format(
    *TIMESTAMP_WINDOW
)
_WINDOW_CHECKS = frozenset({"greater_than_or_equal_to", "less_than"})
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MISSING = object()
MAX_PROBLEMS = 20


def quoted_names(items: list[Any], limit: int = 5) -> str:
    """A list of field names for a message: each quoted short, at most `limit` of them."""
    shown = ", ".join(quote(item) for item in items[:limit])
    more = f" and {len(items) - limit:,} more" if len(items) > limit else ""
    return f"[{shown}]{more}"


def lengths_shown(lengths: dict[str, int], limit: int = 5) -> str:
    """Field list lengths for a message, names quoted short, at most `limit` of them."""
    shown = ", ".join(f"{quote(name)}: {count}" for name, count in list(lengths.items())[:limit])
    more = f" and {len(lengths) - limit:,} more" if len(lengths) > limit else ""
    return f"{{{shown}}}{more}"


class _Clipped:
    """A long string value in a message: shown as its first characters."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return quote(self.value)

    def __str__(self) -> str:
        return quote(self.value)[1:]


class RequestError(ValueError):
    """A request that cannot be scored; the message says which row and field, and why."""


class _Bad(Exception):
    """A value that is not of its column's type."""


def _integer(value: Any) -> int:
    if type(value) is int:
        result = value
    elif type(value) is float and value.is_integer():
        result = int(value)
    else:
        raise _Bad
    if not INT64_MIN <= result <= INT64_MAX:
        raise _Bad
    return result


def _float(value: Any) -> float | None:
    if type(value) is float:
        return None if math.isnan(value) else value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise _Bad from None
    raise _Bad


def _string(value: Any) -> str:
    if type(value) is not str:
        raise _Bad
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Bad
    return value


def _timestamp(value: Any) -> datetime:
    if type(value) is not str or _TIMESTAMP.fullmatch(value) is None:
        raise _Bad
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:  # near year 1 or 9999 an offset can carry the time out of Python's range
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _Bad from None


def _date(value: Any) -> date:
    if type(value) is not str or _DATE.fullmatch(value) is None:
        raise _Bad
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _Bad from None


CONVERTERS = {
    "string": _string,
    "integer": _integer,
    "float": _float,
    "boolean": _boolean,
    "timestamp": _timestamp,
    "date": _date,
}
# Python types that need no conversion, for the all-of-one-type fast path.
_PLAIN = {"string": str, "integer": int, "boolean": bool}


@dataclass(frozen=True)
class FieldRule:
    """One request field's rules, from its `ColumnSpec`."""

    name: str
    kind: str
    nullable: bool
    min: float | None
    max: float | None
    allowed: frozenset[Any] | None
    unique: bool

    def convert(self, values: list[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
        """Typed values (None for nulls) and (row, message) for values not of the type or null
        where not allowed. Rows whose field is absent (`_MISSING`) are skipped: reported already."""
        plain = _PLAIN.get(self.kind)
        if (
            plain is not None
            and all(type(v) is plain for v in values)
            and (self.kind != "integer" or (min(values) >= INT64_MIN and max(values) <= INT64_MAX))
        ):
            return values, []
        convert = CONVERTERS[self.kind]
        if self.kind in ("timestamp", "date") and all(type(v) is str for v in values):
            try:  # times repeat within a batch: parse each distinct string once
                parsed = {text: convert(text) for text in set(values)}
            except _Bad:
                pass  # the loop below names the rows
            else:
                return [parsed[v] for v in values], []
        typed: list[Any] = []
        problems: list[tuple[int, str]] = []
        for row, value in enumerate(values):
            if value is _MISSING:
                typed.append(None)
                continue
            if value is None:
                result = None
            else:
                try:
                    result = convert(value)
                except _Bad:
                    got = ("true" if value else "false") if type(value) is bool else quote(value)  # JSON's
                    problems.append((row, f"field {self.name!r} must be {self.kind}, got {got}"))
                    typed.append(None)
                    continue
            if result is None and not self.nullable:
                problems.append((row, f"field {self.name!r} is required"))
            typed.append(result)
        return typed, problems

    def violations(self, values: list[Any]) -> list[tuple[int, str, Any]]:
        """(row, pandera check name, value) for each rule the typed values break."""
        present = [v for v in values if v is not None]
        found: list[tuple[int, str, Any]] = []
        if not present:
            return found
        low, high = self.min, self.max
        if self.kind == "timestamp":
            low_ok = min(present) >= TIMESTAMP_WINDOW[0]
            high_ok = max(present) < TIMESTAMP_WINDOW[1]
            if not (low_ok and high_ok):
                for row, value in enumerate(values):
                    if value is not None and value < TIMESTAMP_WINDOW[0]:
                        found.append((row, "greater_than_or_equal_to", value))
                    elif value is not None and value >= TIMESTAMP_WINDOW[1]:
                        found.append((row, "less_than", value))
        if self.kind == "float" and not math.isfinite(sum(present)):
            found += [(r, "finite", v) for r, v in enumerate(values) if v is not None and math.isinf(v)]
        if low is not None and min(present) < low:
            found += [
                (r, "greater_than_or_equal_to", v) for r, v in enumerate(values) if v is not None and v < low
            ]
        if high is not None and max(present) > high:
            found += [
                (r, "less_than_or_equal_to", v) for r, v in enumerate(values) if v is not None and v > high
            ]
        if self.allowed is not None and not self.allowed.issuperset(present):
            found += [(r, "isin", v) for r, v in enumerate(values) if v is not None and v not in self.allowed]
        if self.unique and len(set(present)) != len(present):
            counts: dict[Any, int] = {}
            for value in present:
                counts[value] = counts.get(value, 0) + 1
            found += [(r, "field_uniqueness", v) for r, v in enumerate(values) if counts.get(v, 0) > 1]
        return found


def describe_violation(spec: PipelineSpec, rule: FieldRule, check: str, value: Any) -> str:
    """One broken rule of a request's field, in a request's words: a timestamp outside
    `TIMESTAMP_WINDOW` is outside what the service accepts (not a partition's window), a repeated id
    is repeated in the request; any other rule as the quarantine words it."""
    if check == "field_uniqueness":
        return f"{rule.name} {value!r} appears more than once in the request"
    if rule.kind == "timestamp" and check in _WINDOW_CHECKS:
        return f"{rule.name} {value} is outside the timestamps the service accepts, {ACCEPTED_TIMESTAMPS}"
    return describe_failure(spec, rule.name, check, value, TIMESTAMP_WINDOW)


class RequestRules:
    """The spec's request fields (every column but the post-event ones) and their rules."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.post_event = frozenset(spec.post_event_columns)
        self.fields = [
            FieldRule(
                name=name,
                kind=column.type,
                nullable=column.nullable,
                min=column.min,
                max=column.max,
                allowed=frozenset(column.allowed) if column.allowed is not None else None,
                unique=name == spec.entity_id,
            )
            for name, column in spec.columns.items()
            if name not in self.post_event
        ]
        self.names = [f.name for f in self.fields]
        self._expected = frozenset(self.names)

    def check_rows(self, rows: Any, max_rows: int) -> dict[str, list[Any]]:
        """Row-oriented JSON (a list of objects) checked and typed, as one list per field."""
        if not isinstance(rows, list) or not rows:
            raise RequestError("rows must be a non-empty list of objects")
        if len(rows) > max_rows:
            raise RequestError(f"batch of {len(rows)} rows is larger than the limit of {max_rows}")
        problems: list[tuple[int, int, str]] = []
        expected = self._expected
        shaped = True
        for index, row in enumerate(rows):
            if type(row) is not dict:
                problems.append((index, 0, f"must be an object, got {type(row).__name__}"))
                shaped = False
                continue
            if row.keys() == expected:
                continue
            missing = [c for c in self.names if c not in row]
            unknown = [c for c in row if c not in expected and c not in self.post_event]
            if missing:
                problems.append((index, 1, f"missing fields {quoted_names(missing)}"))
                shaped = False
            if unknown:
                problems.append((index, 2, f"unknown fields {quoted_names(unknown)}"))
        if shaped:
            columns = {name: [row[name] for row in rows] for name in self.names}
        else:
            columns = {
                name: [row.get(name, _MISSING) if type(row) is dict else _MISSING for row in rows]
                for name in self.names
            }
        return self._check(columns, problems)

    def check_columns(self, columns: Any, max_rows: int) -> dict[str, list[Any]]:
        """Column-oriented JSON ({field: [values...]}) checked and typed."""
        if not isinstance(columns, dict) or not columns:
            raise RequestError("columns must be an object mapping each field to a list of values")
        lengths = {name: len(values) for name, values in columns.items() if isinstance(values, list)}
        if len(lengths) != len(columns):
            bad = [name for name in columns if name not in lengths]
            raise RequestError(f"fields {quoted_names(bad)} must be lists of values")
        if len(set(lengths.values())) != 1:
            raise RequestError(f"all field lists must have the same length, got {lengths_shown(lengths)}")
        count = next(iter(lengths.values()))
        if count == 0:
            raise RequestError("rows must be a non-empty list of objects")
        if count > max_rows:
            raise RequestError(f"batch of {count} rows is larger than the limit of {max_rows}")
        missing = [c for c in self.names if c not in columns]
        unknown = [c for c in columns if c not in self._expected and c not in self.post_event]
        if missing or unknown:
            # Every row has the same problem; name the first like the row-oriented check does.
            parts = [f"missing fields {quoted_names(missing)}"] if missing else []
            parts += [f"unknown fields {quoted_names(unknown)}"] if unknown else []
            raise RequestError("; ".join(f"row 0: {p}" for p in parts))
        return self._check({name: columns[name] for name in self.names}, [])

    def _check(
        self, columns: dict[str, list[Any]], problems: list[tuple[int, int, str]]
    ) -> dict[str, list[Any]]:
        typed: dict[str, list[Any]] = {}
        for order, rule in enumerate(self.fields, start=3):
            typed[rule.name], found = rule.convert(columns[rule.name])
            problems += [(row, order, message) for row, message in found]
        if problems:
            problems.sort(key=lambda p: (p[0], p[1]))
            raise RequestError(
                "; ".join(f"row {row}: {message}" for row, _, message in problems[:MAX_PROBLEMS])
            )
        self.check_rules(typed)
        return typed

    def check_rules(self, typed: dict[str, list[Any]]) -> None:
        """The spec's rules on typed values (ranges, allowed values, unique ids, the timestamps
        the service accepts), worded by `describe_violation`."""
        reasons: dict[int, list[str]] = {}
        for rule in self.fields:
            for row, check, value in rule.violations(typed[rule.name]):
                shown = _Clipped(value) if type(value) is str and len(value) > QUOTE_CHARS else value
                reasons.setdefault(row, []).append(describe_violation(self.spec, rule, check, shown))
        if reasons:
            listed = sorted(reasons.items())[:MAX_PROBLEMS]
            raise RequestError("; ".join(f"row {row}: {'; '.join(dict.fromkeys(r))}" for row, r in listed))
