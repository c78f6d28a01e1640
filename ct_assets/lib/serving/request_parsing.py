"""Request parsing: JSON rows or columns checked and typed by rules compiled from the spec
(`request_rules`; Arrow requests by the same rules vectorized in `arrow_request_check`), held as a
`TypedRequest` of one typed list (or Arrow column) per request field."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ct_assets.lib.core.spec import PipelineSpec
from ct_assets.lib.serving.request_rules import RequestError, RequestRules, lengths_shown, quoted_names

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RequestError"]

MAX_BATCH_ROWS = 10_000


def request_columns(spec: PipelineSpec) -> dict[str, str]:
    """What a caller knows before the event: every column except post-event ones."""
    return {name: column.type for name, column in spec.columns.items() if name not in spec.post_event_columns}


def rows_from_columns(columns: Any) -> list[dict[str, Any]]:
    """Column-oriented JSON ({field: [values...]}) as rows; lists must have equal lengths."""
    if not isinstance(columns, dict) or not columns:
        raise RequestError("columns must be an object mapping each field to a list of values")
    lengths = {name: len(values) for name, values in columns.items() if isinstance(values, list)}
    if len(lengths) != len(columns):
        bad = [name for name in columns if name not in lengths]
        raise RequestError(f"fields {quoted_names(bad)} must be lists of values")
    if len(set(lengths.values())) != 1:
        raise RequestError(f"all field lists must have the same length, got {lengths_shown(lengths)}")
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


_RULES: dict[int, RequestRules] = {}


def rules_for(spec: PipelineSpec) -> RequestRules:
    """The spec's compiled request rules (built once per spec object)."""
    rules = _RULES.get(id(spec))
    if rules is None or rules.spec is not spec:
        rules = _RULES[id(spec)] = RequestRules(spec)
    return rules


class TypedRequest:
    """Request rows that passed the spec's rules: one list of typed values per request field, or
    (the Arrow endpoint) a table of the request fields in the spec's Arrow types."""

    def __init__(self, columns: dict[str, list[Any]] | None = None, table: pa.Table | None = None) -> None:
        if (columns is None) == (table is None):
            raise ValueError("a typed request holds either columns or a table")
        self.table = table
        self._columns: dict[str, list[Any]] = dict(columns or {})
        self._table_names = frozenset(table.column_names) if table is not None else frozenset()

    def __len__(self) -> int:
        if self.table is not None:
            return self.table.num_rows
        return len(next(iter(self._columns.values())))

    def __contains__(self, name: str) -> bool:
        return name in self._columns or name in self._table_names

    def arrow_column(self, name: str) -> pa.Array:
        """One field's values as an Arrow array of its spec type."""
        import pyarrow as pa

        if name in self._table_names:
            return self.table.column(name).combine_chunks()  # type: ignore[union-attr]
        return pa.array(self.column(name))

    def values(self, name: str) -> Any:
        """One field's values as they came: an Arrow array (Arrow requests, for the log writer to
        convert off the request path) or a list."""
        if name in self._table_names:
            return self.arrow_column(name)
        return self.column(name)

    def column(self, name: str) -> list[Any]:
        """One field's values as Python objects (converted from the table once, when asked)."""
        values = self._columns.get(name)
        if values is None:
            if name not in self._table_names:
                raise KeyError(name)
            values = self._columns[name] = self.table.column(name).to_pylist()  # type: ignore[union-attr]
        return values


def validate_request(rows: Any, spec: PipelineSpec, max_rows: int = MAX_BATCH_ROWS) -> TypedRequest:
    """Check shape, fields, types and the spec's rules of row-oriented JSON; return it typed."""
    return TypedRequest(rules_for(spec).check_rows(rows, max_rows))
