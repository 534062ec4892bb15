"""Where job outputs live, and which paths jobs may read.

A folder or model named in a job's params is checked when the job is created (`strict`: requests from the HTTP
API, which must stay under CONVLENS_ALLOWED_ROOTS) and stored as its real path. The worker checks again that
the path still is what was checked (nothing swapped for a symlink since), and ml/ opens each file with a check
of where the opened file really lies, so swapping a file after planning gains nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from convlens.ml.data.folders import class_folders
from convlens.ml.errors import ConvlensError
from convlens.ml.settings import settings

JOB_ID = re.compile(r"[0-9a-f]{32}")
REF_HELP = "NAME, NAME:VERSION or NAME@ALIAS (`convlens models list`), a train job's id, SWEEP_ID:best or a .keras file"


def job_dir(job_id: str) -> Path:
    path = settings().home_dir / "runs" / job_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def stored(path: str | Path) -> str:
    """A path for the database: one under CONVLENS_HOME's runs as `runs/ID/...` (so a moved or copied home works
    in place), any other as it is."""
    text = str(path)
    for home in {str(settings().home_dir), str(settings().home_dir.resolve())}:
        prefix = home.rstrip("/") + "/"
        if text.startswith(prefix + "runs/"):
            return text[len(prefix):]
    return text


def _strings(value: Any, change: Any) -> Any:
    """A JSON value with `change` applied to each of its strings."""
    if isinstance(value, dict):
        return {k: _strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, change) for v in value]
    return change(value) if isinstance(value, str) else value


def relocatable(value: Any) -> Any:
    """A result's JSON with every path under CONVLENS_HOME stored relative to it (see `stored`)."""
    return _strings(value, lambda text: stored(text) if text.startswith("/") else text)


def localized(value: Any) -> Any:
    """A stored result's JSON with each `runs/ID/...` path made absolute under this CONVLENS_HOME (as shown)."""
    return _strings(value, lambda text: str(local(text)) if RUN_PATH.match(text) else text)


RUN_PATH = re.compile(r"runs/[0-9a-f]{32}(/|$)")


def is_run_key(text: str) -> bool:
    """A path convlens stored for its own output (`runs/ID/...`), valid on any machine through the store."""
    return RUN_PATH.match(text) is not None and ".." not in Path(text).parts


def run_key(text: str) -> str | None:
    """The `runs/ID/...` part of a path to a job's output under any machine's home (or given as it is); None for
    any other path."""
    text = text.rstrip("/")
    for found in RUN_PATH.finditer(text):
        if found.start() == 0 or text[found.start() - 1] == "/":
            key = text[found.start():]
            return key if is_run_key(key) else None
    return None


def local(text: str | Path) -> Path:
    """A stored path on this machine: `runs/ID/...` under this CONVLENS_HOME, an absolute one as it is."""
    path = Path(text)
    return path if path.is_absolute() else settings().home_dir / path


def overlay_path(overlay_dir: str, image: str) -> Path:
    """Where a classify job wrote the Grad-CAM overlay of one image."""
    from convlens.ml.listing import overlay_name

    return local(overlay_dir) / overlay_name(Path(image))


class PathRefused(ConvlensError, ValueError):
    """A path a job may not read: outside the allowed roots, not what it claims to be, or unreadable."""

    http_status = 403


def _real(raw: str, what: str) -> Path:
    path = Path(raw).expanduser()
    if ".." in path.parts:
        raise PathRefused(f"{raw}: '..' is not allowed in {what} paths")
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # too long a name, a symlink loop
        raise PathRefused(f"{raw}: cannot be resolved ({exc})") from None


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(real == root or real.is_relative_to(root) for root in roots)


def check_folder(folder: str, require_roots: bool = False) -> Path:
    """The folder's real path if it lies under an allowed root; '..' parts and symlinks out are refused.

    require_roots: refuse every folder while CONVLENS_ALLOWED_ROOTS is unset (the HTTP API's rule)."""
    real = _real(folder, "folder")
    roots = settings().roots
    if roots is None:
        if require_roots:
            raise PathRefused("no folders may be read: set CONVLENS_ALLOWED_ROOTS on the API server")
    elif not _inside(real, roots) and (require_roots or not _inside(real, [settings().home_dir / "runs"])):
        # A job that convlens itself makes (a study's sample of test images) may read its own runs folder.
        raise PathRefused(f"{folder}: outside the allowed roots ({', '.join(map(str, roots))})")
    try:
        if not real.is_dir():
            raise PathRefused(f"{folder}: not a folder")
    except OSError as exc:
        raise PathRefused(f"{folder}: cannot be read ({exc.strerror})") from None
    return real


def check_dataset(dataset: str, require_roots: bool = False) -> str:
    """'cifar10' (the server's own copy) or a checked image folder's real path (no class folder a symlink)."""
    if dataset == "cifar10":
        return dataset
    real = check_folder(dataset, require_roots)
    class_folders(real)
    return str(real)


def check_model(ref: str, require_roots: bool = False) -> str:
    """A train job's id (registered names were resolved to one before: worker.registry.resolve_ref), or the real
    path of a .keras file under the allowed roots or this server's runs."""
    if JOB_ID.fullmatch(ref):
        return ref  # its registered model, which convlens itself wrote under CONVLENS_HOME/runs
    if not ref.endswith(".keras"):
        raise PathRefused(f"--model {ref}: no registered model of that name; a model is {REF_HELP}")
    real = _real(ref, "model")
    roots = settings().roots
    if roots is not None or require_roots:
        allowed = [*(roots or []), settings().home_dir / "runs"]
        if not _inside(real, allowed):
            raise PathRefused(f"{ref}: outside the allowed roots and this server's runs "
                              f"({', '.join(map(str, allowed))})")
    try:
        if not real.is_file():
            raise PathRefused(f"{ref}: no such model file")
    except OSError as exc:
        raise PathRefused(f"{ref}: cannot be read ({exc.strerror})") from None
    return str(real)


def unchanged(checked: str) -> Path:
    """A path checked (and resolved) when the job was created, if it still resolves to itself."""
    real = _real(checked, "checked")
    if str(real) != checked:
        raise PathRefused(f"{checked}: now resolves to {real} (a symlink was put in its place); refused")
    return real
