"""The one exception base for errors a user can act on, and those of ml/ (worker/, db/ and api/ subclass it).

The message names the problem and is shown as it is, translated once at each edge: the CLI prints it as one
line and exits 2 (api/cli.py), HTTP answers `http_status` with it in the error body (api/http.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: the field at fault (dotted, "" for the input as a whole) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def problems(exc: ValidationError) -> list[Problem]:
    """pydantic's errors as Problems: the one formatter every edge (CLI, HTTP, client) shows them through.
    "body" (FastAPI's name for the request) and pydantic's "Value error, " prefix say nothing to a user."""
    return [Problem(".".join(str(p) for p in e["loc"] if p != "body"), e["msg"].removeprefix("Value error, "))
            for e in exc.errors()]


def one_line(exc: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """Every problem on one line. Given `options`, each field is named as the CLI option that sets it: the one
    `options` names for it (a list field's singular option: tags -> --tag), else `--` and the field with dashes."""
    if options is None:
        return "; ".join(map(str, problems(exc)))

    def option(field: str) -> str:
        head = field.split(".")[0]
        return options.get(head, "--" + head.replace("_", "-"))

    return "; ".join(f"{option(p.field)}: {p.message}" for p in problems(exc))


class ConvlensError(Exception):
    """An error a user can act on; `field` names the request field at fault, when one is."""

    http_status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class DatasetError(ConvlensError):
    """A dataset file is missing, truncated or corrupt."""


class ImageReadError(ConvlensError):
    """One image file could not be decoded."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileRefused(ConvlensError):
    """A user-named file that is not read: outside its folder, not a regular file, or one of convlens's own."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
