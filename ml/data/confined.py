"""Opening a user-named file so that nothing outside its allowed folder is ever opened, not even for a moment.

Why by hand: no library opens a path component by component without following symlinks. It matters beyond
reading the wrong bytes: closing any descriptor of a file drops all of this process's POSIX locks on it, so
merely opening and closing the SQLite database through a swapped symlink or a hard link splits it (SQLite's
locks are POSIX locks). The walk takes O_PATH descriptors (whose close drops no lock), checks what they point
at, and only then opens the checked file itself for reading, through the descriptor, so no swap can intervene.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading
from pathlib import Path

from convlens.ml.errors import FileRefused
from convlens.ml.settings import settings

O_PATH = getattr(os, "O_PATH", 0)  # Linux; elsewhere the walk opens for reading and checks after opening
_WALK = (O_PATH or os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
# convlens's own files that a user-named path must never reach (their locks would be dropped on close).
OWN_FILES = ("convlens.db", "convlens.db-wal", "convlens.db-shm", "convlens.db-journal", "convlens.db.lock",
             "redis.lock", "redis.rdb", "redis.pid")


def _own_inodes() -> set[tuple[int, int]]:
    files = [settings().home_dir / name for name in OWN_FILES]
    url = settings().database_url or ""
    if url.startswith("sqlite:///"):
        db = url.removeprefix("sqlite:///")
        files += [Path(db + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    found = set()
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


class _Folder:
    """An O_PATH descriptor of a folder, closed when its thread's cache lets go of it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd

    def __del__(self) -> None:
        os.close(self.fd)


# The last folder walked to, per thread: files of one folder come in runs (the listing is sorted).
_last = threading.local()


def _walk_to(folder: str) -> int:
    """An O_PATH descriptor of folder, reached from / one component at a time, refusing every symlink."""
    cached = getattr(_last, "folder", None)
    if cached is not None and cached.path == folder:
        return cached.fd
    fd = os.open("/", _WALK | os.O_DIRECTORY)
    try:
        for part in Path(folder).parts[1:]:
            nxt = os.open(part, _WALK | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    _last.folder = _Folder(folder, fd)
    return fd


def _where(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "changed while being opened (a symlink was swapped in); not read"
    if exc.errno == errno.ENOENT:
        return "file not found"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return exc.strerror or str(exc)


def _realpath_cached(path: str) -> str:
    """os.path.realpath of a folder, remembered per thread for the last few (files of one folder come in runs,
    and realpath's component-by-component lstat cost more than decoding a small PNG). A folder swapped for a
    symlink after it was resolved is not followed: the walk below refuses symlinks and checks where it got."""
    cache = getattr(_last, "real", None)
    if cache is None:
        cache = _last.real = {}
    real = cache.get(path)
    if real is None:
        if len(cache) >= 64:
            cache.clear()
        real = cache[path] = os.path.realpath(path)
    return real


_home_of: list = [None, ""]  # [the settings object, its home resolved]: Path.resolve per file cost as much


def _home() -> str:
    s = settings()
    if _home_of[0] is not s:
        _home_of[:] = [s, os.fspath(s.home_dir)]
    return _home_of[1]


class _Symlink(Exception):
    """The file named is itself a symlink: resolve it in full and open its target instead."""


def open_confined(path: str | os.PathLike[str], within: str | os.PathLike[str] | None = None) -> int:
    """A read-only, non-blocking descriptor of the regular file at path, which must lie under `within` (when
    given) once every symlink is resolved. Raises FileRefused with the reason otherwise."""
    name = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(name))
    try:  # the folder resolved (cached), the file itself opened without following it
        return _open_real(name, os.path.join(_realpath_cached(folder), base), within, link_is_error=False)
    except _Symlink:
        return _open_real(name, os.path.realpath(name), within, link_is_error=True)


def _open_real(name: str, real: str, within: str | os.PathLike[str] | None, link_is_error: bool) -> int:
    if within is not None:
        root = _realpath_cached(os.fspath(within))  # a relative one would be resolved against the process's folder
        if os.path.commonpath([real, root]) != root:
            raise FileRefused(name, f"lies outside {root} (a symlink out of the folder); not read")
    folder, base = os.path.split(real)
    try:
        try:
            handle = os.open(base, _WALK, dir_fd=_walk_to(folder))
        except FileNotFoundError:  # the cached folder may have been replaced since: walk to it afresh
            _last.folder = None
            handle = os.open(base, _WALK, dir_fd=_walk_to(folder))
    except OSError as exc:
        raise FileRefused(name, _reason(exc)) from None
    try:
        st = os.fstat(handle)
        if stat.S_ISLNK(st.st_mode) and not link_is_error:
            raise _Symlink
        if stat.S_ISDIR(st.st_mode):
            raise FileRefused(name, "a folder reached through a symlink; not entered")
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(name, "not a regular file (a FIFO, socket or device); not read")
        if (st.st_nlink > 1 or real.startswith(_home())) \
                and (st.st_dev, st.st_ino) in _own_inodes():
            raise FileRefused(name, "is one of convlens's own files (database or broker); not read")
        where = _where(handle)
        if where is not None and where != real:
            raise FileRefused(name, "changed while being opened (moved or swapped); not read")
        if not O_PATH:
            return handle
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileRefused(name, _reason(exc)) from None
    finally:
        if O_PATH:
            os.close(handle)


def copy_tree_confined(source: Path, target: Path) -> int:
    """Copies the folder source to target, each file through open_confined (so within source), refusing any
    symlink or special file in it; returns the files copied. shutil.copytree would follow a symlink out."""
    copied = 0
    for folder, dirs, files in os.walk(source, followlinks=False):  # confined: lists only, opens nothing
        rel = Path(folder).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs:
            if os.path.islink(os.path.join(folder, name)):
                raise FileRefused(os.path.join(folder, name), "a symlinked folder; not entered")
        for name in files:
            fd = open_confined(os.path.join(folder, name), source)
            with os.fdopen(fd, "rb") as src, open(target / rel / name, "wb") as dst:  # noqa: PTH123 (our own copy)
                shutil.copyfileobj(src, dst, 1 << 20)
            copied += 1
    return copied
