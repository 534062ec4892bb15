"""This machine's copies of stored artifacts (CONVLENS_CACHE), by content: `blobs/AB/SHA256` and `trees/HASH/`
(a model file with its sidecar, hard-linked from the blobs under their own names, which Keras needs).

Safe with several processes on one machine: each copy is written under a temporary name, checked against its
SHA-256 and renamed into place (two workers fetching the same model both write it; the last rename wins and the
contents are equal). Kept under CONVLENS_CACHE_MB by dropping the least recently used entries, never one used in
the last minute (another process may be about to open it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from convlens.ml.errors import ConvlensError

Reader = Callable[[], Iterator[bytes]]
RECENT_S = 60.0


class Cache:
    def __init__(self, root: Path, cap_bytes: int) -> None:
        self.root, self.cap = root, cap_bytes

    def _path(self, sha: str) -> Path:
        return self.root / "blobs" / sha[:2] / sha

    def peek(self, sha: str) -> Path | None:
        path = self._path(sha)
        return path if path.is_file() else None

    def blob(self, sha: str, read: Reader) -> Path:
        """The cached copy of the content `sha`, fetched with `read` when absent."""
        path = self._path(sha)
        if path.is_file():
            os.utime(path)  # recently used: the last to go
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self.root / "tmp", prefix=f"{sha[:12]}.")
        try:
            check = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for piece in read():
                    check.update(piece)
                    out.write(piece)
            if check.hexdigest() != sha:
                raise ConvlensError(f"artifact {sha[:12]}: the store returned other content (SHA-256 "
                                    f"{check.hexdigest()[:12]}); not cached")
            os.replace(partial, path)
        finally:
            Path(partial).unlink(missing_ok=True)
        self.trim(keep=path)
        return path

    def tree(self, files: dict[str, tuple[str, Reader]]) -> Path:
        """A folder holding each relative name's content (name -> (SHA-256, reader)), named by those contents."""
        name = hashlib.sha256(json.dumps(sorted((k, v[0]) for k, v in files.items())).encode()).hexdigest()
        dest = self.root / "trees" / name
        if dest.is_dir():
            os.utime(dest)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="tree."))
        try:
            for rel, (sha, read) in files.items():
                target = partial / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                blob = self.blob(sha, read)
                try:
                    os.link(blob, target)
                except OSError:  # a cache on a file system without hard links
                    shutil.copyfile(blob, target)
            try:
                partial.rename(dest)
            except OSError:  # another process made the same tree meanwhile
                pass
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return dest

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("blobs/*/*"))

    def trim(self, keep: Path) -> None:
        """Drops the least recently used blobs and trees while the blobs exceed the cap (trees are hard links to
        blobs: dropped with them, their space counted once)."""
        entries = [(p.stat().st_mtime, p, p.stat().st_size) for p in self.root.glob("blobs/*/*")]
        total = sum(size for _, _, size in entries)
        if total <= self.cap:
            return
        entries += [(p.stat().st_mtime, p, 0) for p in self.root.glob("trees/*")]
        now = time.time()
        for mtime, path, size in sorted(entries, key=lambda e: e[0]):
            if total <= self.cap:
                return
            if path == keep or now - mtime < RECENT_S:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                total -= size
