"""Exceptions that name the file or setting at fault, so callers can show them as they are."""


class ConvlensError(Exception):
    """Base class for errors a user can act on."""


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
