"""Where job outputs live, and which folders jobs may read (CONVLENS_ALLOWED_ROOTS)."""

from __future__ import annotations

from pathlib import Path

from convlens.ml.settings import settings


def job_dir(job_id: str) -> Path:
    path = settings().home_dir / "runs" / job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


class FolderRefused(ValueError):
    pass


def check_folder(folder: str, require_roots: bool = False) -> Path:
    """The folder's real path if it lies under an allowed root; '..' parts and symlinks out are refused."""
    raw = Path(folder).expanduser()
    if ".." in raw.parts:
        raise FolderRefused(f"{folder}: '..' is not allowed in folder paths")
    real = raw.resolve()
    roots = settings().roots
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


def resolve_model(ref: str) -> Path:
    """A model path, or the model that train job `ref` registered."""
    from sqlalchemy import select

    from convlens.db.models import TrainedModelRow
    from convlens.db.session import session_scope
    from convlens.worker.lifecycle import JobError

    path = Path(ref).expanduser()
    if path.suffix == ".keras" and path.is_file():
        return path.resolve()
    with session_scope() as s:
        row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == ref)
                        .order_by(TrainedModelRow.id.desc())).first()
        if row is not None:
            return Path(row.path)
    raise JobError(f"model {ref!r}: neither a .keras file nor the id of a train job with a model")
