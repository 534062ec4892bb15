"""A `.keras` file as untrusted input: copied through the confined opener into a private folder, and checked as an
archive before Keras inflates a byte of it.

A model file is code (a Lambda layer's Python, a SavedModel's graph): Keras' safe mode refuses the first, and only
`convlens models import`, run on the server itself, ever brings in the second. The limits below are far above any
image classifier's archive (config.json is kilobytes, the weights an HDF5 file that deflate barely shrinks) and far
below what a zip bomb needs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from convlens.ml.data.confined import open_confined
from convlens.ml.errors import ConvlensError, FileRefused

MAX_FILE = 1 << 30  # bytes of the .keras file itself
MAX_MEMBERS = 256  # files in the archive (Keras writes three: config, metadata, weights)
MAX_CONFIG = 16 << 20  # bytes of config.json and metadata.json, inflated
MAX_UNPACKED = 2 << 30  # bytes of all members, inflated
MAX_RATIO = 200  # inflated / compressed bytes of any member over 1 MiB inflated
CONFIG_MEMBERS = ("config.json", "metadata.json")


class ModelFileRefused(ConvlensError):
    """A model file that is not loaded: unreadable, not a Keras archive, or over a limit."""

    http_status = 422


def _folder_of(path: Path) -> str:
    """The real folder a model file is named in: its files must lie in it, not behind a symlink out of it."""
    return os.path.realpath(Path(path).parent)


def check_archive(archive: zipfile.ZipFile, name: str) -> None:
    """Refuses an archive whose declared sizes break a limit (Python's zipfile never inflates a member beyond
    its declared size, so these bound what loading it can cost)."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise ModelFileRefused(f"{name}: {len(members):,} files in the archive, over the limit of {MAX_MEMBERS}")
    if "config.json" not in archive.namelist():
        raise ModelFileRefused(f"{name}: a zip without config.json is no .keras model")
    total = 0
    for m in members:
        total += m.file_size
        if m.filename in CONFIG_MEMBERS and m.file_size > MAX_CONFIG:
            raise ModelFileRefused(f"{name}: {m.filename} inflates to {m.file_size:,} bytes, over the limit of "
                                   f"{MAX_CONFIG:,} (a zip bomb?)")
        if m.file_size > 1 << 20 and m.file_size > MAX_RATIO * max(m.compress_size, 1):
            raise ModelFileRefused(f"{name}: {m.filename} inflates {m.file_size / max(m.compress_size, 1):,.0f}-fold, "
                                   f"over the limit of {MAX_RATIO}-fold (a zip bomb?)")
    if total > MAX_UNPACKED:
        raise ModelFileRefused(f"{name}: inflates to {total:,} bytes, over the limit of {MAX_UNPACKED:,}")


def _open_confined(path: Path) -> int:
    """A descriptor of the .keras file at path, a regular file in its own folder (ml.data.confined)."""
    if not str(path).endswith(".keras"):
        raise ModelFileRefused(f"{path}: not a .keras file")
    try:
        return open_confined(path, _folder_of(path))
    except FileRefused as exc:
        raise ModelFileRefused(str(exc)) from None


@contextmanager
def _checked(source: Any, name: str) -> Iterator[zipfile.ZipFile]:
    """The archive in `source` (a path or a binary file), refused unless it is a zip within the limits."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ModelFileRefused(f"{name}: not a .keras archive (a zip of the model's config and weights)") from None
    with archive:
        check_archive(archive, name)
        yield archive


@contextmanager
def private_copy(path: Path) -> Iterator[Path]:
    """A checked copy of the .keras file at path in a folder only this process uses: what Keras then reads
    cannot be swapped, and reading it drops no lock."""
    fd = _open_confined(path)
    with tempfile.TemporaryDirectory(prefix="convlens-model-") as tmp:
        copy = Path(tmp) / "model.keras"
        with os.fdopen(fd, "rb") as src, open(copy, "wb") as dst:  # noqa: PTH123 (our own private file)
            if os.fstat(src.fileno()).st_size > MAX_FILE:
                raise ModelFileRefused(f"{path}: over the limit of {MAX_FILE:,} bytes for a model file")
            shutil.copyfileobj(src, dst, 1 << 20)
        with _checked(copy, str(path)):
            pass
        yield copy


def read_config(path: Path) -> dict[str, Any]:
    """The model's config.json (its architecture), read from the checked archive through the confined
    descriptor: the zip's directory and one member, not a copy of the weights."""
    with os.fdopen(_open_confined(path), "rb") as fh, _checked(fh, str(path)) as archive:
        try:
            config = json.loads(archive.read("config.json"))
        except (ValueError, zipfile.BadZipFile, OSError) as exc:
            raise ModelFileRefused(f"{path}: config.json is not readable JSON ({str(exc).splitlines()[0]})") \
                from None
    if not isinstance(config, dict):
        raise ModelFileRefused(f"{path}: config.json holds no model")
    return config


def read_sidecar(path: Path) -> dict[str, Any]:
    """A model's JSON sidecar, read confined to the model's folder (a symlink to the database is refused)."""
    try:
        fd = open_confined(path, _folder_of(path))
    except FileRefused as exc:
        raise ModelFileRefused(f"model metadata {exc}") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_CONFIG + 1)
    if len(data) > MAX_CONFIG:
        raise ModelFileRefused(f"{path}: model metadata over {MAX_CONFIG:,} bytes")
    try:
        meta = json.loads(data)
    except ValueError:
        raise ModelFileRefused(f"{path}: model metadata is not JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class_names"), list):
        raise ModelFileRefused(f"{path}: model metadata without class names")
    return meta
