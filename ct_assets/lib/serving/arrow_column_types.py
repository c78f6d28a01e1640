"""One column of an Arrow request read as its field's type: `read_column` gives the column in the
spec's Arrow type (`ARROW_TYPES`), or the rows whose values cannot be typed, or refuses the column
as a whole (`WrongType`) when its Arrow type cannot hold the field's values.

What a column may be for each field type (any number of record batches; nulls where the spec allows):
- string: string, large_string, string_view, or a dictionary of one of them;
- integer: any signed or unsigned integer type (uint64 values above the int64 range are refused), or
  a float type whose values are all whole numbers inside the int64 range;
- float: any float or integer type (NaN counts as null, as in the JSON path);
- boolean: bool;
- timestamp: timestamp of any unit (no zone means UTC, any zone is converted; nanoseconds are
  truncated to microseconds as the JSON path truncates extra fraction digits), or ISO 8601 strings
  read exactly as the JSON path reads them (each distinct string parsed once);
- date: date32 or date64 (whole days), or `YYYY-MM-DD` strings read as the JSON path reads them;
- a column of Arrow's null type, for any field (all values null).
Any of these may come dictionary-encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ct_assets.lib.serving.request_rules import INT64_MAX, INT64_MIN, FieldRule

# The Arrow type of each spec column type, as `serving.FeatureEngine.arrow` builds it.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
_EXPECTED = {
    "string": "string, large_string, string_view or a dictionary of strings",
    "integer": "int64 or another integer type, or a float type holding whole numbers",
    "float": "float64 or another float or integer type",
    "boolean": "bool",
    "timestamp": "timestamp of any unit (no zone means UTC) or ISO 8601 strings",
    "date": "date32, date64 or YYYY-MM-DD strings",
}
# Python's datetime and date range (years 1-9999), in microseconds and days since the epoch (UTC):
# Arrow values outside it cannot be worded or compared the way the JSON path does.
_US_RANGE = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_DAY_RANGE = (-719_162, 2_932_896)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class WrongType(Exception):
    """A column whose Arrow type cannot hold its field's values; the message names the field, the
    types expected and the type found."""


class _NotTheType(Exception):
    """Raised by a reader: the column's Arrow type is not one its field takes."""


@dataclass
class ColumnRead:
    """One field's column: its typed values (None if some cannot be typed), the rows whose values
    are not of the field's type, and whether non-null bad values must be shown as raw Arrow values."""

    source: pa.Array
    typed: pa.Array | None
    type_bad: pa.BooleanArray | None = None
    raw: bool = False


def read_column(rule: FieldRule, column: pa.ChunkedArray) -> ColumnRead:
    """`column` read as `rule`'s field type (see the module doc); `WrongType` if it cannot be."""
    source = _unviewed(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks())
    try:
        return _READERS[rule.kind](rule, source)
    except _NotTheType:
        raise WrongType(
            f"field {rule.name!r} must be {rule.kind} (Arrow {_EXPECTED[rule.kind]}), "
            f"got an Arrow column of type {source.type}"
        ) from None


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _unviewed(source: pa.Array) -> pa.Array:
    """View strings (plain or as a dictionary's values) as large strings: few compute kernels,
    `take` among them, accept views."""
    words = source.dictionary if pa.types.is_dictionary(source.type) else source
    if pa.types.is_string_view(words.type):
        wide = words.cast(pa.large_string())
    elif pa.types.is_binary_view(words.type):
        wide = words.cast(pa.large_binary())
    else:
        return source
    if pa.types.is_dictionary(source.type):
        return pa.DictionaryArray.from_arrays(source.indices, wide)
    return wide


def _plain(source: pa.Array) -> pa.Array:
    """A dictionary column decoded to its values; any other column as it is."""
    if pa.types.is_dictionary(source.type):
        return source.dictionary_decode()
    return source


def _read_string(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    if not (is_text(values.type) or pa.types.is_null(values.type)):
        raise _NotTheType
    return ColumnRead(source, values.cast(pa.string()))


def _read_boolean(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    if not (pa.types.is_boolean(values.type) or pa.types.is_null(values.type)):
        raise _NotTheType
    return ColumnRead(source, values.cast(pa.bool_()))


def _read_integer(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    kind = values.type
    if pa.types.is_null(kind) or pa.types.is_signed_integer(kind):
        return ColumnRead(source, values.cast(pa.int64()))
    if pa.types.is_unsigned_integer(kind):
        if kind == pa.uint64() and values.null_count < len(values):
            over = pc.fill_null(pc.greater(values, pa.scalar(INT64_MAX, type=kind)), False)
            if over.true_count:
                return ColumnRead(values, None, over)
        return ColumnRead(source, values.cast(pa.int64()))
    if pa.types.is_floating(kind):
        floats = values.cast(pa.float64())
        whole = pc.and_(
            pc.equal(pc.floor(floats), floats),
            pc.and_(pc.greater_equal(floats, float(INT64_MIN)), pc.less(floats, -float(INT64_MIN))),
        )  # NaN and infinities are not whole; 2**63 is past the int64 range
        not_whole = pc.fill_null(pc.invert(whole), False)
        if not_whole.true_count:
            return ColumnRead(floats, None, not_whole)
        return ColumnRead(source, floats.cast(pa.int64()))
    raise _NotTheType


def _read_float(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    kind = values.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
        raise _NotTheType
    floats = values.cast(pa.float64(), safe=False)  # int64 to float64 rounds as Python's float()
    nan = pc.fill_null(pc.is_nan(floats), False) if pa.types.is_floating(kind) else None
    if nan is not None and nan.true_count:
        floats = pc.if_else(nan, pa.scalar(None, type=pa.float64()), floats)
    return ColumnRead(floats, floats)


def _read_text_or_nulls(rule: FieldRule, source: pa.Array, values: pa.Array) -> ColumnRead | None:
    """Timestamps and dates sent as text (read as the JSON path reads them) or as a column of
    Arrow's null type (`values`: the source decoded); None for any other type."""
    if is_text(values.type):
        return _parse_text(rule, values)
    if pa.types.is_null(values.type):
        return ColumnRead(source, values.cast(ARROW_TYPES[rule.kind]))
    return None


def _read_timestamp(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    read = _read_text_or_nulls(rule, source, values)
    if read is not None:
        return read
    kind = values.type
    if not pa.types.is_timestamp(kind):
        raise _NotTheType
    raw = values.cast(pa.int64())
    per_second = _PER_SECOND[kind.unit]  # Python's range in this unit, rounded inwards
    low = -(-_US_RANGE[0] * per_second // 1_000_000)
    outside = _outside(raw, low, _US_RANGE[1] * per_second // 1_000_000)
    if outside is not None:
        return ColumnRead(values, None, outside, raw=True)
    if kind.unit == "ns":  # floor to the microsecond: Python truncates extra fraction digits
        micros = pc.divide(raw, 1000)  # truncates toward zero
        behind = pc.greater(pc.multiply(micros, 1000), raw)  # negative, not whole: one more back
        micros = pc.subtract(micros, behind.cast(pa.int64()))
        return ColumnRead(source, micros.cast(ARROW_TYPES["timestamp"]))
    return ColumnRead(source, values.cast(ARROW_TYPES["timestamp"]))


def _read_date(rule: FieldRule, source: pa.Array) -> ColumnRead:
    values = _plain(source)
    read = _read_text_or_nulls(rule, source, values)
    if read is not None:
        return read
    kind = values.type
    if pa.types.is_date64(kind):
        try:
            values = values.cast(pa.date32())
        except pa.ArrowInvalid:  # milliseconds that are not whole days
            raise _NotTheType from None
    elif not pa.types.is_date32(kind):
        raise _NotTheType
    outside = _outside(values.cast(pa.int32()).cast(pa.int64()), *_DAY_RANGE)
    if outside is not None:
        return ColumnRead(values, None, outside, raw=True)
    return ColumnRead(source, values)


def _outside(raw: pa.Array, low: int, high: int) -> pa.BooleanArray | None:
    """Rows whose raw value lies outside [low, high]; None if there are none."""
    if raw.null_count == len(raw):
        return None
    least, most = (v.as_py() for v in pc.min_max(raw).values())
    if least >= low and most <= high:
        return None
    return pc.fill_null(pc.or_(pc.less(raw, low), pc.greater(raw, high)), False)


def _parse_text(rule: FieldRule, values: pa.Array) -> ColumnRead:
    """Time or date strings, each distinct one read by `FieldRule.convert` (the JSON path's parser)."""
    encoded = values.dictionary_encode()
    parsed, found = rule.convert(encoded.dictionary.to_pylist())
    typed = pa.array(parsed, type=ARROW_TYPES[rule.kind]).take(encoded.indices)
    if not found:
        return ColumnRead(values, typed)
    unreadable = pa.array([index for index, _message in found], type=encoded.indices.type)
    return ColumnRead(values, None, pc.fill_null(pc.is_in(encoded.indices, value_set=unreadable), False))


_READERS: dict[str, Callable[[FieldRule, pa.Array], ColumnRead]] = {
    "string": _read_string,
    "integer": _read_integer,
    "float": _read_float,
    "boolean": _read_boolean,
    "timestamp": _read_timestamp,
    "date": _read_date,
}
