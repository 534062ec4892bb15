"""Where job outputs live, and which folders jobs may read (CONVLENS_ALLOWED_ROOTS)."""

from __future__ import annotations

import os
from pathlib import Path

from db.session import home


def job_dir(job_id: str) -> Path:
    path = home() / "runs" / job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def allowed_roots() -> list[Path] | None:
    """The configured roots (os.pathsep-separated), or None when CONVLENS_ALLOWED_ROOTS is unset."""
    raw = os.environ.get("CONVLENS_ALLOWED_ROOTS")
    if raw is None:
        return None
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


class FolderRefused(ValueError):
    pass


def check_folder(folder: str, require_roots: bool = False) -> Path:
    """The folder's real path if it lies under an allowed root; '..' parts and symlinks out are refused."""
    raw = Path(folder).expanduser()
    if ".." in raw.parts:
        raise FolderRefused(f"{folder}: '..' is not allowed in folder paths")
    real = raw.resolve()
    roots = allowed_roots()
    if roots is None:
        if require_roots:
            raise FolderRefused("no folders may be read: set CONVLENS_ALLOWED_ROOTS on the API server")
    elif not any(real == root or real.is_relative_to(root) for root in roots):
        raise FolderRefused(f"{folder}: outside the allowed roots ({', '.join(map(str, roots))})")
    if not real.is_dir():
        raise FolderRefused(f"{folder}: not a folder")
    return real


def files_within(root: Path, files: list[Path]) -> list[Path]:
    """Drops files (symlinks included) whose real path escapes root."""
    root = root.resolve()
    return [f for f in files if f.resolve().is_relative_to(root)]
