"""The check of an Arrow request's table: `check_table` accepts and refuses what the JSON path does
(`RequestRules.check_columns`), in the same words (a table without rows or columns in a table's),
vectorized with `pyarrow.compute`, and returns one column per request field in the spec's Arrow
type.

It refuses a table of the wrong shape (no rows, too many, repeated, missing or unknown fields; post-
event columns are tolerated and dropped, as in the JSON path) and dictionary-encoded fields too large
once decoded; reads each column as its field's type (`arrow_column_types`); then lists the values
not of their field's type and the required nulls, then the rows that break the spec's rules
(`arrow_rule_checks`). The per-row wording comes from `FieldRule.convert` and
`RequestRules.check_rules`, run in Python only on the rows that a vectorized check found to be bad
(at most `MAX_PROBLEMS` of them are listed).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ct_assets.lib.serving.arrow_column_types import ColumnRead, WrongType, is_text, read_column
from ct_assets.lib.serving.arrow_request import BodyTooLarge
from ct_assets.lib.serving.arrow_rule_checks import check_rules
from ct_assets.lib.serving.body_limit import max_body_bytes
from ct_assets.lib.serving.request_rules import MAX_PROBLEMS, RequestError, RequestRules, quoted_names


class _Shown:
    """A value the JSON path could not have sent, shown as text in `FieldRule.convert`'s message."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


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
        elif not (is_text(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
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
        raise RequestError("the Arrow table has no columns: send one column per request field")
    count = table.num_rows
    if count == 0:
        raise RequestError("the Arrow table has no rows: send at least one row")
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

    reads: list[ColumnRead] = []
    wrong: list[str] = []
    for rule in rules.fields:
        try:
            reads.append(read_column(rule, table.column(rule.name)))
        except WrongType as err:
            wrong.append(str(err))
    if wrong:
        raise RequestError("; ".join(wrong[:MAX_PROBLEMS]))
    _check_values(rules, reads)
    typed = [read.typed for read in reads]
    check_rules(rules, typed)
    return pa.Table.from_arrays(typed, names=rules.names)


def _check_values(rules: RequestRules, reads: list[ColumnRead]) -> None:
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
