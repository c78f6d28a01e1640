"""Row validation: a pandera model built from the spec decides which rows go on and why the rest
are quarantined.

`row_model` turns the spec's columns into a `pa.DataFrameModel` (types, nulls, ranges, allowed
values, entity-id uniqueness, and the partition's event-time window). `find_bad_rows` runs it
lazily, so every failure of every row is collected, and returns one readable reason per bad row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from ct_assets.lib.core.spec import ColumnSpec, PipelineSpec

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa


def _annotation(column: ColumnSpec) -> Any:
    import pandas as pd
    import pandera.pandas as pa

    dtype: Any = {
        "string": str,
        "integer": pd.Int64Dtype,
        "float": float,
        "boolean": pd.BooleanDtype,
        "timestamp": Annotated[pd.DatetimeTZDtype, "us", "UTC"],
        "date": pa.Date,
    }[column.type]
    return pa.typing.Series[dtype]


def _field(
    column: ColumnSpec, *, unique: bool = False, window: tuple[datetime, datetime] | None = None
) -> Any:
    import pandas as pd
    import pandera.pandas as pa

    rules: dict[str, Any] = {"nullable": column.nullable, "unique": unique}
    if column.min is not None:
        rules["ge"] = column.min
    if column.max is not None:
        rules["le"] = column.max
    if column.allowed is not None:
        rules["isin"] = column.allowed
    if window is not None:
        rules["ge"] = pd.Timestamp(window[0]).tz_convert("UTC")
        rules["lt"] = pd.Timestamp(window[1]).tz_convert("UTC")
    return pa.Field(description=column.description or None, **rules)


def row_model(spec: PipelineSpec, window: tuple[datetime, datetime]) -> type[pa.DataFrameModel]:
    """The spec's rows as a pandera model; the timestamp must fall inside `window`."""
    import pandera.pandas as pa

    annotations: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for name, column in spec.columns.items():
        annotations[name] = _annotation(column)
        attributes[name] = _field(
            column,
            unique=name == spec.entity_id,
            window=window if name == spec.timestamp_column else None,
        )
        if column.type == "float":
            attributes[f"_finite_{name}"] = _finite_check(name)
    config = type("Config", (), {"coerce": True, "strict": False, "name": f"{spec.name}_rows"})
    class_name = "".join(part.title() for part in spec.name.split("_")) + "Rows"
    return type(
        class_name,
        (pa.DataFrameModel,),
        {"__annotations__": annotations, "Config": config, "__module__": __name__, **attributes},
    )


def _finite_check(column: str) -> Any:
    """A float column's rule that its values are finite (missing ones are the nullable rule's)."""
    import numpy as np
    import pandera.pandas as pa

    def finite(cls: Any, series: pd.Series) -> pd.Series:
        return ~np.isinf(series)

    return pa.check(column, name="finite")(classmethod(finite))


def _describe_failure(
    spec: PipelineSpec, column: str, check: str, value: Any, window: tuple[datetime, datetime]
) -> str:
    rule = spec.columns.get(column)
    if check == "not_nullable":
        return f"{column} is missing (the column is required)"
    if check == "field_uniqueness":
        return f"{column} {value!r} appears more than once in the partition"
    if check == "finite":
        return f"{column} {value} is not a finite number"
    if column == spec.timestamp_column and check.startswith(("greater_than", "less_than")):
        return (
            f"{column} {value} is outside the partition window "
            f"[{window[0].isoformat()}, {window[1].isoformat()})"
        )
    if rule is not None and rule.type == "timestamp" and check.startswith(("greater_than", "less_than")):
        # Any other timestamp column is checked against the range of representable timestamps.
        return (
            f"{column} {value} is outside the supported range "
            f"[{window[0].isoformat()}, {window[1].isoformat()})"
        )
    if check.startswith("greater_than_or_equal_to") and rule is not None:
        return f"{column} {value} is below the minimum {rule.min:g}"
    if check.startswith("less_than_or_equal_to") and rule is not None:
        return f"{column} {value} is above the maximum {rule.max:g}"
    if check.startswith("isin"):
        return f"{column} {value!r} is not an allowed value"
    if check.startswith(("dtype", "coerce")):
        return f"{column} {value!r} cannot be read as {rule.type if rule else check}"
    return f"{column} {value!r} fails {check}"


def _cast_reasons(cast_errors: str) -> tuple[str, set[str]]:
    """Reason for values that did not parse, and the columns concerned."""
    errors = json.loads(cast_errors)
    if "_line" in errors:
        return f"malformed line ({errors['_error']}): {errors['_line']!r}", {"*"}
    parts = [f"{column} {value!r} is not a valid value for its type" for column, value in errors.items()]
    return "; ".join(parts), set(errors)


def find_bad_rows(
    frame: pd.DataFrame, spec: PipelineSpec, window: tuple[datetime, datetime]
) -> dict[int, str]:
    """Positions of rows that must be quarantined, each with its reasons joined by '; '.

    `frame` holds the spec's columns and `_cast_errors`; positions are 0-based row positions.
    """
    import pandera.pandas as pa

    reasons: dict[int, list[str]] = {}
    skip: dict[int, set[str]] = {}
    cast = frame["_cast_errors"]
    for position in cast.index[cast.notna()]:
        reason, columns = _cast_reasons(cast[position])
        reasons[position] = [reason]
        skip[position] = columns
    try:
        row_model(spec, window).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        failures = err.failure_cases
        per_row = failures[failures["index"].notna()]
        for column, check, value, position in per_row[
            ["column", "check", "failure_case", "index"]
        ].itertuples(index=False):
            position = int(position)
            skipped = skip.get(position, set())
            if "*" in skipped or column in skipped:
                continue
            reasons.setdefault(position, []).append(
                _describe_failure(spec, str(column), str(check), value, window)
            )
        whole_frame = failures[failures["index"].isna()]
        if not whole_frame.empty:
            problems = "; ".join(
                f"{c}: {k} ({v})"
                for c, k, v in whole_frame[["column", "check", "failure_case"]].itertuples(index=False)
            )
            raise ValueError(f"partition fails schema-level checks: {problems}") from None
    return {position: "; ".join(dict.fromkeys(items)) for position, items in reasons.items()}
