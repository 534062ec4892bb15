"""The base of every job kind's params model: it refuses, before any field is validated, values that no
database column or file system can hold, so a bad request is a 422 and never a row that breaks later reads."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

MAX_TEXT = 4096  # the longest path (PATH_MAX) a string param may hold
INT64 = 2**63 - 1


def value_problem(value: Any) -> str | None:
    """Why value cannot be stored as it is, or None when it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL byte"
        if len(value) > MAX_TEXT:
            return f"longer than {MAX_TEXT} characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate or an undecodable byte)"
    elif isinstance(value, bool):
        return None
    elif isinstance(value, int) and not -INT64 <= value <= INT64:
        return "is out of range"
    elif isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    return None


def _problems(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _problems(k, f"{where}key {k!r}" if where else "a key")
                + _problems(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _problems(v, f"{where}[{i}]")]
    problem = value_problem(value)
    return [f"{where}: {problem}"] if problem else []


def refused(model: type[BaseModel], field: str, message: str, value: Any) -> ValidationError:
    """A check made after the fields were validated (against a dataset or a saved model), reported like theirs."""
    return ValidationError.from_exception_data(model.__name__, [InitErrorDetails(
        type=PydanticCustomError("refused", message), loc=(field,), input=value)])


class JobParams(BaseModel):
    # Strict: a request's `true`, `"1"` or `"yes"` is not quietly read as a number or a flag.
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problems = _problems(data, "")
        if problems:
            raise ValueError("; ".join(problems[:5]))
        return data
