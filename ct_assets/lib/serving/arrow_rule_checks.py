"""The spec's rules checked on an Arrow request's typed columns, vectorized with `pyarrow.compute`:
finite floats, ranges, allowed values, unique ids and the timestamp window. `check_rules` finds the
rows that break one and has `RequestRules.check_rules` (the JSON path's check) word the first
`MAX_PROBLEMS` of them.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ct_assets.lib.serving.request_rules import (
    INT64_MAX,
    INT64_MIN,
    MAX_PROBLEMS,
    TIMESTAMP_WINDOW,
    FieldRule,
    RequestRules,
)


def check_rules(rules: RequestRules, typed: list[pa.Array]) -> None:
    """Finite floats, ranges, allowed values, unique ids and the timestamp window, checked
    vectorized; the first
    `MAX_PROBLEMS` rows that break one are worded by `RequestRules.check_rules`, given those rows'
    values at their positions (None elsewhere, which that check skips)."""
    masks = [_violations(rule, values) for rule, values in zip(rules.fields, typed, strict=True)]
    found = [mask for mask in masks if mask is not None]
    if not found:
        return
    bad = found[0]
    for mask in found[1:]:
        bad = pc.or_(bad, mask)
    rows = pc.indices_nonzero(bad)[:MAX_PROBLEMS].to_pylist()
    length = rows[-1] + 1
    sparse: dict[str, list[Any]] = {}
    for rule, values in zip(rules.fields, typed, strict=True):
        column: list[Any] = [None] * length
        taken = values.take(rows).to_pylist()
        if rule.kind == "timestamp":  # pyarrow's UTC may be pytz's: the JSON path's repr shows timezone.utc
            taken = [None if v is None else v.replace(tzinfo=UTC) for v in taken]
        for row, value in zip(rows, taken, strict=True):
            column[row] = value
        if rule.unique:
            # A repeated id whose other copies lie past the listed rows (possible only when
            # MAX_PROBLEMS rows are listed): one copy appended after them keeps it counted as
            # repeated, and being past MAX_PROBLEMS listed rows, the copy is never listed itself.
            listed = Counter(v for v in taken if v is not None)
            counts = _counts(values, [v for v, n in listed.items() if n == 1])
            column += [v for v, n in counts.items() if n > 1]
        sparse[rule.name] = column
    rules.check_rules(sparse)


def _counts(values: pa.Array, wanted: list[Any]) -> dict[Any, int]:
    """How often each of `wanted` appears in `values`."""
    if not wanted:
        return {}
    chosen = values.filter(pc.is_in(values, value_set=pa.array(wanted, type=values.type)))
    counted = pc.value_counts(chosen)
    return dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True))


def _violations(rule: FieldRule, values: pa.Array) -> pa.BooleanArray | None:
    """Rows whose (non-null) value breaks a rule of `FieldRule.violations`; None if none does."""
    if values.null_count == len(values):
        return None
    masks: list[pa.BooleanArray] = []
    if rule.kind == "float":
        masks.append(pc.is_inf(values))
    if rule.kind == "timestamp" or rule.min is not None or rule.max is not None:
        extremes = pc.min_max(values)  # one pass; the element-wise checks only when they can fail
        least, most = extremes["min"].as_py(), extremes["max"].as_py()
        if rule.kind == "timestamp" and not TIMESTAMP_WINDOW[0] <= least <= most < TIMESTAMP_WINDOW[1]:
            low = pa.scalar(TIMESTAMP_WINDOW[0], type=values.type)
            high = pa.scalar(TIMESTAMP_WINDOW[1], type=values.type)
            masks += [pc.less(values, low), pc.greater_equal(values, high)]
        if rule.min is not None and least < rule.min:
            masks.append(_compare(values, rule.min, below=True))
        if rule.max is not None and most > rule.max:
            masks.append(_compare(values, rule.max, below=False))
    if rule.allowed is not None:
        masks.append(_not_allowed(rule, values))
    if rule.unique and pc.count_distinct(values).as_py() != len(values) - values.null_count:
        counted = pc.value_counts(values)
        repeated = counted.field("values").filter(pc.greater(counted.field("counts"), 1))
        masks.append(pc.is_in(values, value_set=repeated, skip_nulls=True))
    masks = [m for m in masks if m.true_count]
    if not masks:
        return None
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_(mask, other)
    return pc.fill_null(mask, False)


def _compare(values: pa.Array, bound: float, *, below: bool) -> pa.BooleanArray:
    """`value < bound` (or `>`) with Python's exact int-to-float comparison for integer columns."""
    if pa.types.is_integer(values.type) and math.isfinite(bound):
        limit = math.ceil(bound) if below else math.floor(bound)
        if limit > INT64_MAX or limit < INT64_MIN:  # every value lies on the same side of it
            everything = (limit > INT64_MAX) == below
            return pc.and_(values.is_valid(), pa.scalar(everything))
        return pc.less(values, limit) if below else pc.greater(values, limit)
    return pc.less(values, float(bound)) if below else pc.greater(values, float(bound))


def _not_allowed(rule: FieldRule, values: pa.Array) -> pa.BooleanArray:
    """Non-null values not in the spec's allowed values, compared as Python compares them."""
    assert rule.allowed is not None
    plain = str if rule.kind == "string" else int
    if all(type(v) is plain for v in rule.allowed):
        outside = pc.invert(pc.is_in(values, value_set=pa.array(list(rule.allowed), type=values.type)))
        return pc.and_(outside, values.is_valid())
    # Mixed allowed values (e.g. a number allowed for a string field): Python's own `in`.
    allowed = rule.allowed
    return pa.array([v is not None and v not in allowed for v in values.to_pylist()], type=pa.bool_())
