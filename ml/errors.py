"""The one exception base for errors a user can act on, and those of ml/ (worker/, db/ and api/ subclass it).

The message names the problem and is shown as it is, translated once at each edge: the CLI prints it as one
line and exits 2 (api/cli.py), HTTP answers `http_status` with it in the error body (api/http.py).
"""

from __future__ import annotations


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
