"""The artifact store: where job outputs (models, plots, overlays, reports) are kept so that every machine can
read them (CONVLENS_ARTIFACT_STORE).

`home`: files under CONVLENS_HOME, read where they were written or through a shared mount. `database` and fsspec
URLs (`s3://bucket/prefix`, `file:///srv/artifacts`): a worker publishes each output when it stores the job's
rows; the content is kept once by its SHA-256 and the path (`runs/ID/...`, as in every row) indexed in the
stored_files table, in the same transaction as the rows that name it. A reader uses the file under its own home
when it has one (it wrote it) and otherwise fetches the content into this machine's cache (worker.artifact_cache).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from convlens.db.models import Blob, BlobChunk, Job, StoredFile, TrainedModelRow, utcnow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.ml.model_layout import sidecar_path
from convlens.ml.settings import settings
from convlens.worker.artifact_cache import Cache
from convlens.worker.errors import JobError
from convlens.worker.paths import JOB_ID, RUN_PATH, PathRefused, check_model, local, stored, unchanged

CHUNK = 4 << 20  # bytes per database row and per read: memory stays flat whatever the file's size


class ArtifactMissing(ConvlensError, FileNotFoundError):
    """An output named by a row that neither this machine nor the artifact store holds."""

    http_status = 404


def read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from _pieces(fh)


def _pieces(fh) -> Iterator[bytes]:
    while piece := fh.read(CHUNK):
        yield piece


def _path_hash(key: str) -> str:
    """stored_files' unique key for a path (paths may exceed what a PostgreSQL btree entry holds)."""
    return hashlib.sha256(key.encode()).hexdigest()


def digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    for piece in read_chunks(path):
        sha.update(piece)
        size += len(piece)
    return sha.hexdigest(), size


class ArtifactStore:
    """`home`: nothing to publish, every path read under this machine's CONVLENS_HOME."""

    name = "home"

    def publish(self, s: Session, job_id: str, files: Iterable[Path | str]) -> int:
        """Keeps each file for every machine, in `s`'s transaction; returns how many it stored."""
        return 0

    def fetch(self, key: str) -> Path:
        """A local file with the content stored at `key` (`runs/ID/...`, or a path under this home)."""
        path = local(stored(key))
        if not path.is_file():
            raise ArtifactMissing(f"{key}: not found under {settings().home_dir}")
        return path

    def fetch_model(self, key: str) -> Path:
        """A local model file with its sidecar (and SavedModel folder) beside it."""
        return self.fetch(key)

    def fetch_folder(self, key: str) -> Path:
        """A local folder holding every file stored under `key` (a study's sample of test images)."""
        path = local(stored(key))
        if not path.is_dir():
            raise ArtifactMissing(f"{key}: no such folder under {settings().home_dir}")
        return path

    def chunks(self, key: str) -> Iterator[bytes]:
        return read_chunks(self.fetch(key))

    def exists(self, key: str) -> bool:
        return local(stored(key)).is_file()


class IndexedStore(ArtifactStore):
    """Contents by SHA-256 in a backend (the subclass), paths in stored_files, copies in this machine's cache."""

    def publish(self, s: Session, job_id: str, files: Iterable[Path | str]) -> int:
        # A classify shard with Grad-CAM publishes thousands of small overlays: one look-up of the contents
        # already kept, then one multi-row statement per table, not a round trip per file.
        named = {stored(f): Path(f) for f in files}
        found = [(key, path, *digest(path)) for key, path in named.items() if RUN_PATH.match(key) and path.is_file()]
        if not found:
            return 0  # (a user's own .keras file stays where it is)
        new = {sha: (size, path) for _, path, sha, size in found}
        for kept in self.blobs_kept(s, list(new)):
            new.pop(kept)
        self.write_blobs(s, [(sha, size, path) for sha, (size, path) in new.items()])
        _upsert(s, StoredFile.__table__, [{
            "path_hash": _path_hash(key), "path": key, "job_id": job_id, "sha256": sha,
            "size": size, "created_at": utcnow()} for key, _, sha, size in found],
            ["path_hash"], update=("sha256", "size", "job_id"))
        return len(found)

    def ref(self, key: str) -> StoredFile | None:
        with session_scope() as s:
            return s.scalars(select(StoredFile).where(
                StoredFile.path_hash == _path_hash(key))).first()

    def refs_under(self, prefix: str) -> list[StoredFile]:
        job_id = prefix.split("/")[1]
        with session_scope() as s:
            return [r for r in s.scalars(select(StoredFile).where(StoredFile.job_id == job_id))
                    if r.path.startswith(prefix)]

    def _ref_or_missing(self, key: str) -> StoredFile:
        ref = self.ref(key)
        if ref is None:
            raise ArtifactMissing(f"{key}: not in the artifact store ({self.name})")
        return ref

    def fetch(self, key: str) -> Path:
        key = stored(key)
        if local(key).is_file():
            return local(key)
        ref = self._ref_or_missing(key)
        return _cache().blob(ref.sha256, self._reader(ref.sha256))

    def fetch_model(self, key: str) -> Path:
        key = stored(key)
        if local(key).is_file():
            return local(key)
        model = self._ref_or_missing(key)
        folder = key.rsplit("/", 1)[0] + "/"
        refs = [model, self._ref_or_missing(str(sidecar_path(Path(key)))),
                *self.refs_under(folder + "savedmodel/")]
        tree = _cache().tree({r.path[len(folder):]: (r.sha256, self._reader(r.sha256)) for r in refs})
        return tree / key[len(folder):]

    def fetch_folder(self, key: str) -> Path:
        key = stored(key).rstrip("/")
        if local(key).is_dir():
            return local(key)
        refs = self.refs_under(key + "/")
        if not refs:
            raise ArtifactMissing(f"{key}: no folder of that name in the artifact store ({self.name})")
        return _cache().tree({r.path[len(key) + 1:]: (r.sha256, self._reader(r.sha256)) for r in refs})

    def _reader(self, sha: str):
        return lambda: self.read_blob(sha)

    def chunks(self, key: str) -> Iterator[bytes]:
        key = stored(key)
        if local(key).is_file():
            return read_chunks(local(key))
        ref = self._ref_or_missing(key)
        cached = _cache().peek(ref.sha256)
        return read_chunks(cached) if cached else self.read_blob(ref.sha256)

    def exists(self, key: str) -> bool:
        key = stored(key)
        return local(key).is_file() or self.ref(key) is not None

    # The backend: contents by SHA-256.
    def blobs_kept(self, s: Session, shas: list[str]) -> set[str]:
        raise NotImplementedError

    def write_blobs(self, s: Session, blobs: list[tuple[str, int, Path]]) -> None:
        """Keeps each (SHA-256, size, file) not kept yet."""
        raise NotImplementedError

    def read_blob(self, sha: str) -> Iterator[bytes]:
        raise NotImplementedError


class DatabaseStore(IndexedStore):
    """Contents in the results database, CHUNK bytes per row, written in the job's own transaction (so a write
    cut short leaves nothing) and read back one row at a time."""

    name = "database"

    def blobs_kept(self, s: Session, shas: list[str]) -> set[str]:
        return {sha for n in range(0, len(shas), 1000)
                for sha in s.scalars(select(Blob.sha256).where(Blob.sha256.in_(shas[n:n + 1000])))}

    def write_blobs(self, s: Session, blobs: list[tuple[str, int, Path]]) -> None:
        # ON CONFLICT DO NOTHING: another job may be storing the same content at this moment. Files of one
        # chunk go in batches; larger ones a chunk at a time (memory stays at one chunk).
        small = [(sha, path) for sha, size, path in blobs if size <= CHUNK]
        for n in range(0, len(small), 256):
            _upsert(s, BlobChunk.__table__, [{"sha256": sha, "seq": 0, "data": path.read_bytes()}
                                             for sha, path in small[n:n + 256]], ["sha256", "seq"])
        for sha, size, path in blobs:
            if size > CHUNK:
                for seq, piece in enumerate(read_chunks(path)):
                    _upsert(s, BlobChunk.__table__, [{"sha256": sha, "seq": seq, "data": piece}], ["sha256", "seq"])
        if blobs:
            _upsert(s, Blob.__table__, [{"sha256": sha, "size": size} for sha, size, _ in blobs], ["sha256"])

    def read_blob(self, sha: str) -> Iterator[bytes]:
        seq = 0
        while True:
            with session_scope() as s:
                piece = s.scalar(select(BlobChunk.data).where(BlobChunk.sha256 == sha, BlobChunk.seq == seq))
            if piece is None:
                return
            yield piece
            seq += 1


class FsspecStore(IndexedStore):
    """Contents as objects `PREFIX/blobs/AB/SHA256` at an fsspec URL; each is written under a temporary name and
    renamed, so a write cut short is never read (and its row, written after, does not exist)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.name = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def _blob(self, sha: str) -> str:
        return f"{self.root.rstrip('/')}/blobs/{sha[:2]}/{sha}"

    def blobs_kept(self, s: Session, shas: list[str]) -> set[str]:
        # Contents the index already names are kept (each object is written before its row).
        return {sha for n in range(0, len(shas), 1000)
                for sha in s.scalars(select(StoredFile.sha256).where(StoredFile.sha256.in_(shas[n:n + 1000])))}

    def write_blobs(self, s: Session, blobs: list[tuple[str, int, Path]]) -> None:
        for sha, _, path in blobs:
            target = self._blob(sha)
            partial = f"{target}.partial-{uuid.uuid4().hex}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(partial, "wb") as out:
                for piece in read_chunks(path):
                    out.write(piece)
            self.fs.mv(partial, target)

    def read_blob(self, sha: str) -> Iterator[bytes]:
        with self.fs.open(self._blob(sha), "rb") as fh:
            yield from _pieces(fh)


def _upsert(s: Session, table: Table, rows: list[dict], keys: list[str], update: tuple[str, ...] = ()) -> None:
    """INSERT the rows (one multi-row statement), or on a duplicate key update `update`'s columns from the new
    row (nothing when empty): SQLite and PostgreSQL."""
    dialect = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    statement = (statement.on_conflict_do_update(index_elements=keys, set_={c: statement.excluded[c] for c in update})
                 if update else statement.on_conflict_do_nothing(index_elements=keys))
    s.execute(statement, rows)


@dataclass(frozen=True)
class ModelFile:
    """A model file on this machine, and whether convlens's registry named it (only a registered model may wrap
    an imported SavedModel: ml.saved.load_trained) rather than a user's path."""

    path: Path
    registered: bool


def resolve_model(ref: str) -> ModelFile:
    """The model file of a checked reference on this machine: a train job's registered model (fetched from the
    artifact store when another machine wrote it), or the path itself."""
    if JOB_ID.fullmatch(ref):
        with session_scope() as s:
            row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == ref)
                            .order_by(TrainedModelRow.id.desc())).first()
        if row is None:
            raise JobError(f"model {ref!r}: no train job with that id has a model")
        try:
            return ModelFile(artifact_store().fetch_model(row.path), registered=True)
        except ArtifactMissing as exc:
            raise JobError(f"model {ref!r}: {exc}") from None
    path = Path(ref)
    if not path.is_absolute():  # params stored before paths were checked at creation
        return ModelFile(Path(check_model(ref)), registered=False)
    try:
        real = unchanged(ref)
    except PathRefused as exc:
        raise JobError(str(exc)) from None
    if not real.is_file():
        raise JobError(f"model {ref!r}: no such .keras file")
    return ModelFile(real, registered=False)


class Migrated(BaseModel):
    """What `convlens artifacts migrate` copied: every file under this home's runs of a job the database knows."""

    store: str
    jobs: int
    files: int
    bytes: int
    verified: int = Field(description="files read back from the store with their SHA-256 equal to the file's")
    skipped: int = Field(description="files under runs/ of no job in this database (left alone)")


def migrate(to: str, progress: Callable[[int, int], None] | None = None) -> Migrated:
    """Copies every output under this home into the store `to` (one transaction per job), then reads each back
    from the store itself (not this disk) and compares contents."""
    target = artifact_store(to)
    if not isinstance(target, IndexedStore):
        raise ConvlensError("--to: `database` or a URL (s3://bucket/prefix); `home` is where the files are now",
                            field="to")
    runs = settings().home_dir / "runs"
    with session_scope() as s:
        known = set(s.scalars(select(Job.id)))
    by_job: dict[str, list[Path]] = {}
    skipped = 0
    for path in sorted(runs.glob("*/**/*")) if runs.is_dir() else []:
        if path.is_file() and not path.name.startswith("."):
            job_id = path.relative_to(runs).parts[0]
            if job_id in known:
                by_job.setdefault(job_id, []).append(path)
            else:
                skipped += 1
    total = sum(len(files) for files in by_job.values())
    done = size = verified = 0
    for job_id, files in by_job.items():
        with session_scope() as s:
            target.publish(s, job_id, files)
        for path in files:
            ref = target.ref(stored(path))
            check = hashlib.sha256()
            for piece in target.read_blob(ref.sha256):
                check.update(piece)
            verified += check.hexdigest() == ref.sha256  # the file's own digest, taken as it was published
            size += ref.size
            done += 1
            if progress:
                progress(done, total)
    return Migrated(store=target.name, jobs=len(by_job), files=total, bytes=size, verified=verified,
                    skipped=skipped)


@lru_cache(maxsize=4)
def _store(setting: str) -> ArtifactStore:
    if setting == "home":
        return ArtifactStore()
    return DatabaseStore() if setting == "database" else FsspecStore(setting)


def artifact_store(setting: str | None = None) -> ArtifactStore:
    """The configured store (CONVLENS_ARTIFACT_STORE), or the one `setting` names."""
    return _store(setting or settings().artifact_store)


def _cache() -> Cache:
    conf = settings()
    return Cache(conf.cache_dir, conf.cache_mb << 20)
