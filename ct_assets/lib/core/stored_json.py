"""Reading a typed record from its JSON file: a damaged or hand-edited file is refused with the
file and every field that is wrong, in one line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class DamagedRecord(ValueError):
    """A stored record that does not match its type; names the file and the fields."""


def field_problems(err: ValidationError) -> str:
    """Each wrong field as `path.to.field: what is wrong`, joined with '; '."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in err.errors())


def read_record(model: type[Model], path: Path, what: str) -> Model:
    """The record of type `model` stored at `path` (`what` names it in an error)."""
    try:
        return model.model_validate_json(Path(path).read_bytes())
    except ValidationError as err:
        raise DamagedRecord(f"{path} is not a valid {what}: {field_problems(err)}") from None
