"""Columnar prediction requests: an Apache Arrow IPC stream, one column per request field.

`read_stream` turns the body into a table (any non-Arrow body is a `RequestError`); `check_table`
checks and types it with the same rules as the JSON path (`RequestRules.check_columns`), vectorized
with `pyarrow.compute`, and returns one column per request field in the spec's Arrow type. It
accepts and refuses what the JSON path does, in the same words: the per-row wording comes from
`FieldRule.convert` and `RequestRules.check_rules`, run in Python only on the rows that a
vectorized check found to be bad (at most `MAX_PROBLEMS` of them are listed).

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
Any of these may come dictionary-encoded. A column of another type is refused as a whole, naming
the field, the types expected and the type found. Post-event columns are tolerated and dropped, as
in the JSON path.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.arrow_size import decompressed_bytes, stream_part
from ct_assets.lib.serving.body_limit import max_body_bytes
from ct_assets.lib.serving.request_rules import (
    INT64_MAX,
    INT64_MIN,
    MAX_PROBLEMS,
    TIMESTAMP_WINDOW,
    FieldRule,
    RequestError,
    RequestRules,
    quoted_names,
)

MEDIA_TYPE = "application/vnd.apache.arrow.stream"

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


class _WrongType(Exception):
    """A column whose Arrow type cannot hold its field's values."""


class _Shown:
    """A value the JSON path could not have sent, shown as text in `FieldRule.convert`'s message."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


@dataclass
class _Read:
    """One field's column: its typed values (None if some cannot be typed), the rows whose values
    are not of the field's type, and whether non-null bad values must be shown as raw Arrow values."""

    source: pa.Array
    typed: pa.Array | None
    type_bad: pa.BooleanArray | None = None
    raw: bool = False


def to_stream(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes (what the endpoint reads, and what it answers)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def encode_rows(spec: PipelineSpec, rows: list[dict[str, Any]]) -> bytes:
    """Client side: JSON-style request rows (as /predict takes them) as the Arrow IPC stream
    /predict_arrow takes, one column per request field in the spec's Arrow type (ISO timestamps
    parsed, no zone meaning UTC; fields missing from a row are null)."""

    def timestamp(value: str | None) -> datetime | None:
        if value is None:
            return None
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    parse = {"timestamp": timestamp, "date": lambda v: None if v is None else date.fromisoformat(v[:10])}
    fields, data = [], {}
    for name, column in spec.columns.items():
        if name in spec.post_event_columns:
            continue
        values = [row.get(name) for row in rows]
        if column.type in parse:
            values = [parse[column.type](v) for v in values]
        fields.append(pa.field(name, ARROW_TYPES[column.type]))
        data[name] = values
    return to_stream(pa.Table.from_pydict(data, schema=pa.schema(fields)))


class BodyTooLarge(RequestError):
    """A body whose compressed buffers would take more memory than the body limit allows."""


def read_stream(body: bytes, max_bytes: int | None = None) -> pa.Table:
    """The table in an Arrow IPC stream body (the IPC file format is accepted too), fully validated
    so that malformed offsets or UTF-8 are refused here rather than met by a compute kernel. A body
    whose buffers take more than `max_bytes` (default: the body limit, CT_MAX_BODY_BYTES) once
    decompressed is refused before anything is decompressed (`arrow_size`)."""
    if not body:
        raise RequestError(f"the body is empty: expected an Arrow IPC stream ({MEDIA_TYPE})")
    limit = max_body_bytes() if max_bytes is None else max_bytes
    try:  # any failure to read the body is the caller's error, never a 500
        size = decompressed_bytes(body)
        if size <= limit:  # a file body is read in message order too, as counted, never via its footer
            table = pa.ipc.open_stream(stream_part(body)).read_all()
            table.validate(full=True)
    except Exception as err:
        hint = " (it looks like JSON)" if bytes(body[:1]) in (b"{", b"[") else ""
        reason = str(err)[:200]  # a reader's message may quote the body
        raise RequestError(f"the body is not a valid Arrow IPC stream{hint}: {reason}") from None
    if size > limit:
        raise BodyTooLarge(
            f"the Arrow body's buffers take {size:,} bytes once decompressed, larger than the limit of "
            f"{limit:,} bytes (CT_MAX_BODY_BYTES)"
        )
    return table


def _decoded_bytes(column: pa.ChunkedArray) -> int:
    """What a dictionary-encoded text or binary column takes once decoded (0 for any other
    column): a small dictionary can expand to the rows times its longest value."""
    if not pa.types.is_dictionary(column.type):
        return 0
    total = 0
    for chunk in column.chunks:
        words, kind = chunk.dictionary, chunk.dictionary.type
        if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
            words = words.cast(pa.large_binary())
        elif not (_is_text(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            continue
        total += pc.sum(pc.binary_length(words).take(chunk.indices)).as_py() or 0
    return total


def check_table(
    rules: RequestRules, table: pa.Table, max_rows: int, max_bytes: int | None = None
) -> pa.Table:
    """The request fields of `table`, checked like `RequestRules.check_columns` and typed: one
    single-chunk column per field in `rules.names` order, in the spec's Arrow type. Refused before
    anything is decoded: dictionary-encoded fields that would take more than `max_bytes` (default:
    the body limit) once decoded."""
    if table.num_columns == 0:
        raise RequestError("columns must be an object mapping each field to a list of values")
    count = table.num_rows
    if count == 0:
        raise RequestError("rows must be a non-empty list of objects")
    if count > max_rows:
        raise RequestError(f"batch of {count} rows is larger than the limit of {max_rows}")
    names = table.column_names
    if len(set(names)) != len(names):
        repeated = list(dict.fromkeys(n for n in names if names.count(n) > 1))
        raise RequestError(f"fields {quoted_names(repeated)} appear more than once")
    present = set(names)
    missing = [c for c in rules.names if c not in present]
    unknown = [c for c in names if c not in rules.names and c not in rules.post_event]
    if missing or unknown:  # worded as check_columns words it
        parts = [f"missing fields {quoted_names(missing)}"] if missing else []
        parts += [f"unknown fields {quoted_names(unknown)}"] if unknown else []
        raise RequestError("; ".join(f"row 0: {p}" for p in parts))
    limit = max_body_bytes() if max_bytes is None else max_bytes
    decoded = sum(_decoded_bytes(table.column(rule.name)) for rule in rules.fields)
    if decoded > limit:
        raise BodyTooLarge(
            f"the Arrow body's dictionary-encoded fields take {decoded:,} bytes once decoded, larger than "
            f"the limit of {limit:,} bytes (CT_MAX_BODY_BYTES)"
        )

    reads: list[_Read] = []
    wrong: list[str] = []
    for rule in rules.fields:
        column = table.column(rule.name)
        source = _unviewed(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks())
        try:
            reads.append(_READERS[rule.kind](rule, source))
        except _WrongType:
            wrong.append(
                f"field {rule.name!r} must be {rule.kind} (Arrow {_EXPECTED[rule.kind]}), "
                f"got an Arrow column of type {source.type}"
            )
    if wrong:
        raise RequestError("; ".join(wrong[:MAX_PROBLEMS]))
    _check_values(rules, reads)
    typed = [read.typed for read in reads]
    _check_rules(rules, typed)
    return pa.Table.from_arrays(typed, names=rules.names)


def _check_values(rules: RequestRules, reads: list[_Read]) -> None:
    """Values not of their field's type, and nulls where the field is required: the rows that the
    JSON path's `FieldRule.convert` would refuse, worded by it."""
    problems: list[tuple[int, int, str]] = []
    for order, (rule, read) in enumerate(zip(rules.fields, reads, strict=True)):
        bad = read.type_bad
        values = read.typed if read.typed is not None else read.source
        if not rule.nullable and values.null_count:
            nulls = values.is_null()
            bad = nulls if bad is None else pc.or_(bad, nulls)
        if bad is None or not bad.true_count:
            continue
        rows = pc.indices_nonzero(bad)[:MAX_PROBLEMS].to_pylist()
        if read.raw:  # values outside Python's range: shown as the Arrow type and the raw number
            shown = read.source.take(rows)
            numbers = (shown.cast(pa.int32()) if pa.types.is_date32(shown.type) else shown).cast(pa.int64())
            given = [
                None if number is None else _Shown(f"{shown.type} value {number}")
                for number in numbers.to_pylist()
            ]
        else:
            given = read.source.take(rows).to_pylist()
        _typed, found = rule.convert(given)
        problems += [(rows[index], order, message) for index, message in found]
    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        raise RequestError("; ".join(f"row {row}: {message}" for row, _, message in problems[:MAX_PROBLEMS]))


def _check_rules(rules: RequestRules, typed: list[pa.Array]) -> None:
    """Ranges, allowed values, unique ids and the timestamp window, checked vectorized; the first
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


def _is_text(kind: pa.DataType) -> bool:
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


def _read_string(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    if not (_is_text(values.type) or pa.types.is_null(values.type)):
        raise _WrongType
    return _Read(source, values.cast(pa.string()))


def _read_boolean(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    if not (pa.types.is_boolean(values.type) or pa.types.is_null(values.type)):
        raise _WrongType
    return _Read(source, values.cast(pa.bool_()))


def _read_integer(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    kind = values.type
    if pa.types.is_null(kind) or pa.types.is_signed_integer(kind):
        return _Read(source, values.cast(pa.int64()))
    if pa.types.is_unsigned_integer(kind):
        if kind == pa.uint64() and values.null_count < len(values):
            over = pc.fill_null(pc.greater(values, pa.scalar(INT64_MAX, type=kind)), False)
            if over.true_count:
                return _Read(values, None, over)
        return _Read(source, values.cast(pa.int64()))
    if pa.types.is_floating(kind):
        floats = values.cast(pa.float64())
        whole = pc.and_(
            pc.equal(pc.floor(floats), floats),
            pc.and_(pc.greater_equal(floats, float(INT64_MIN)), pc.less(floats, -float(INT64_MIN))),
        )  # NaN and infinities are not whole; 2**63 is past the int64 range
        not_whole = pc.fill_null(pc.invert(whole), False)
        if not_whole.true_count:
            return _Read(floats, None, not_whole)
        return _Read(source, floats.cast(pa.int64()))
    raise _WrongType


def _read_float(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    kind = values.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)):
        raise _WrongType
    floats = values.cast(pa.float64(), safe=False)  # int64 to float64 rounds as Python's float()
    nan = pc.fill_null(pc.is_nan(floats), False) if pa.types.is_floating(kind) else None
    if nan is not None and nan.true_count:
        floats = pc.if_else(nan, pa.scalar(None, type=pa.float64()), floats)
    return _Read(floats, floats)


def _read_text_or_nulls(rule: FieldRule, source: pa.Array, values: pa.Array) -> _Read | None:
    """Timestamps and dates sent as text (read as the JSON path reads them) or as a column of
    Arrow's null type (`values`: the source decoded); None for any other type."""
    if _is_text(values.type):
        return _parse_text(rule, values)
    if pa.types.is_null(values.type):
        return _Read(source, values.cast(ARROW_TYPES[rule.kind]))
    return None


def _read_timestamp(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    read = _read_text_or_nulls(rule, source, values)
    if read is not None:
        return read
    kind = values.type
    if not pa.types.is_timestamp(kind):
        raise _WrongType
    raw = values.cast(pa.int64())
    per_second = _PER_SECOND[kind.unit]  # Python's range in this unit, rounded inwards
    low = -(-_US_RANGE[0] * per_second // 1_000_000)
    outside = _outside(raw, low, _US_RANGE[1] * per_second // 1_000_000)
    if outside is not None:
        return _Read(values, None, outside, raw=True)
    if kind.unit == "ns":  # floor to the microsecond: Python truncates extra fraction digits
        micros = pc.divide(raw, 1000)  # truncates toward zero
        behind = pc.greater(pc.multiply(micros, 1000), raw)  # negative, not whole: one more back
        micros = pc.subtract(micros, behind.cast(pa.int64()))
        return _Read(source, micros.cast(ARROW_TYPES["timestamp"]))
    return _Read(source, values.cast(ARROW_TYPES["timestamp"]))


def _read_date(rule: FieldRule, source: pa.Array) -> _Read:
    values = _plain(source)
    read = _read_text_or_nulls(rule, source, values)
    if read is not None:
        return read
    kind = values.type
    if pa.types.is_date64(kind):
        try:
            values = values.cast(pa.date32())
        except pa.ArrowInvalid:  # milliseconds that are not whole days
            raise _WrongType from None
    elif not pa.types.is_date32(kind):
        raise _WrongType
    outside = _outside(values.cast(pa.int32()).cast(pa.int64()), *_DAY_RANGE)
    if outside is not None:
        return _Read(values, None, outside, raw=True)
    return _Read(source, values)


def _outside(raw: pa.Array, low: int, high: int) -> pa.BooleanArray | None:
    """Rows whose raw value lies outside [low, high]; None if there are none."""
    if raw.null_count == len(raw):
        return None
    least, most = (v.as_py() for v in pc.min_max(raw).values())
    if least >= low and most <= high:
        return None
    return pc.fill_null(pc.or_(pc.less(raw, low), pc.greater(raw, high)), False)


def _parse_text(rule: FieldRule, values: pa.Array) -> _Read:
    """Time or date strings, each distinct one read by `FieldRule.convert` (the JSON path's parser)."""
    encoded = values.dictionary_encode()
    parsed, found = rule.convert(encoded.dictionary.to_pylist())
    typed = pa.array(parsed, type=ARROW_TYPES[rule.kind]).take(encoded.indices)
    if not found:
        return _Read(values, typed)
    unreadable = pa.array([index for index, _message in found], type=encoded.indices.type)
    return _Read(values, None, pc.fill_null(pc.is_in(encoded.indices, value_set=unreadable), False))


_READERS = {
    "string": _read_string,
    "integer": _read_integer,
    "float": _read_float,
    "boolean": _read_boolean,
    "timestamp": _read_timestamp,
    "date": _read_date,
}
