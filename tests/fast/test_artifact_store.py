"""The artifact store on a SQLite file: what one home publishes another home reads (the `database` store and an
fsspec `file://` URL), models fetched with their sidecar into a content-named cache folder, the cache's cap, and
a publish killed halfway leaving nothing readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import saved_model

from convlens.db.models import Blob, BlobChunk, Job, StoredFile
from convlens.db.session import session_scope, upgrade
from convlens.worker.artifact_cache import Cache
from convlens.worker.artifacts import CHUNK, ArtifactMissing, artifact_store, resolve_model


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Two homes sharing one database (as two machines share PostgreSQL); the first is in use."""
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("CONVLENS_HOME", str(a))
    monkeypatch.setenv("CONVLENS_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    upgrade()
    return a, b


def _job() -> str:
    with session_scope() as s:
        job = Job(kind="train", status="running")
        s.add(job)
        s.flush()
        return job.id


def _publish(store: str, job_id: str, files: list[Path]) -> int:
    with session_scope() as s:
        return artifact_store(store).publish(s, job_id, files)


@pytest.mark.parametrize("store", ["database", "file"])
def test_another_home_reads_what_one_published(homes, store, tmp_path, monkeypatch):
    a, b = homes
    store = "database" if store == "database" else f"file://{tmp_path / 'bucket'}"
    job_id = _job()
    run = a / "runs" / job_id
    run.mkdir(parents=True)
    plot = run / "history.png"
    plot.write_bytes(os.urandom(2 * CHUNK + 123))  # three chunks
    model = saved_model(run / "model.keras", ["cat", "dog"])
    with session_scope() as s:
        from convlens.worker import registry
        registry.register(s, job_id, f"runs/{job_id}/model.keras", "seed", ["cat", "dog"], None)
    outside = tmp_path / "mine.keras"
    outside.write_bytes(b"a user's own file stays where it is")
    assert _publish(store, job_id, [plot, model, model.with_suffix(".json"), outside]) == 3
    assert _publish(store, job_id, [plot]) == 1  # published again (a re-run): one row, one blob
    with session_scope() as s:
        assert s.query(StoredFile).count() == 3
        if store == "database":
            assert s.query(Blob).count() == 3 and s.query(BlobChunk).filter_by(sha256=s.query(StoredFile).filter(
                StoredFile.path.endswith("history.png")).one().sha256).count() == 3

    monkeypatch.setenv("CONVLENS_HOME", str(b))  # the other machine: nothing of a's on its disk
    monkeypatch.setenv("CONVLENS_ARTIFACT_STORE", store)
    key = f"runs/{job_id}/history.png"
    fetched = artifact_store().fetch(key)
    assert fetched.is_relative_to(b / "cache") and fetched.read_bytes() == plot.read_bytes()
    assert b"".join(artifact_store().chunks(key)) == plot.read_bytes()
    assert b"".join(artifact_store().chunks(str(a / key))) == plot.read_bytes()  # an absolute path of a's home
    loaded = resolve_model(job_id).path
    assert loaded.name == "model.keras" and loaded.with_suffix(".json").is_file()
    assert loaded.read_bytes() == model.read_bytes() and loaded.is_relative_to(b / "cache" / "trees")
    assert resolve_model(job_id).path == loaded  # by content: fetched once
    from convlens.ml.saved import load_trained
    assert load_trained(loaded).class_names == ["cat", "dog"]
    with pytest.raises(ArtifactMissing, match="not in the artifact store"):
        artifact_store().fetch(f"runs/{job_id}/nothing.png")
    with pytest.raises(ArtifactMissing, match="no folder of that name"):
        artifact_store().fetch_folder(f"runs/{job_id}/sample")
    assert not artifact_store().exists(f"runs/{job_id}/nothing.png") and artifact_store().exists(key)


def test_the_cache_keeps_under_its_cap(tmp_path):
    cache = Cache(tmp_path, cap_bytes=3 * 1000)
    import hashlib
    blobs = [os.urandom(1000) for _ in range(5)]
    paths = []
    for i, data in enumerate(blobs):
        sha = hashlib.sha256(data).hexdigest()
        paths.append(cache.blob(sha, lambda data=data: iter([data])))
        os.utime(paths[-1], (time.time() - 1000 + i, time.time() - 1000 + i))  # used long ago, oldest first
    cache.trim(keep=paths[-1])
    assert [p.exists() for p in paths] == [False, False, True, True, True] and cache.size() == 3000
    with pytest.raises(Exception, match="other content"):
        cache.blob("0" * 64, lambda: iter([b"not that"]))
    assert not cache.peek("0" * 64) and not list((tmp_path / "tmp").iterdir())


WRITER = """
import sys
from pathlib import Path
from convlens.db.session import session_scope
from convlens.worker.artifacts import artifact_store
with session_scope() as s:
    artifact_store(sys.argv[1]).publish(s, sys.argv[2], [Path(sys.argv[3])])
"""


@pytest.mark.parametrize("store", ["database", "file"])
def test_a_publish_killed_halfway_leaves_nothing_readable(homes, store, tmp_path, monkeypatch):
    a, _ = homes
    store = "database" if store == "database" else f"file://{tmp_path / 'bucket'}"
    job_id = _job()
    big = a / "runs" / job_id / "model.keras"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:
        for _ in range(400):
            fh.write(os.urandom(1 << 20))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, store, job_id, str(big)], env=os.environ.copy())
    # Killed once it is writing: the SQLite log or the object's partial file has grown past a few chunks.
    watch = (lambda: sum(p.stat().st_size for p in tmp_path.glob("shared.db-wal"))) if store == "database" else (
        lambda: sum(p.stat().st_size for p in (tmp_path / "bucket").rglob("*.partial-*")))
    deadline = time.monotonic() + 60
    while watch() < 3 * CHUNK and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.poll() is None, "the write finished before it could be interrupted"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    with session_scope() as s:
        assert s.query(StoredFile).count() == 0 and s.query(Blob).count() == 0
        assert s.query(BlobChunk).count() == 0
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(ArtifactMissing):
        artifact_store(store).fetch(f"runs/{job_id}/model.keras")
    if store != "database":  # no finished object either, only the partial one
        assert not [p for p in (tmp_path / "bucket").rglob("*") if p.is_file() and ".partial-" not in p.name]
    # Published again, whole, it reads back.
    monkeypatch.setenv("CONVLENS_HOME", str(a))
    assert _publish(store, job_id, [big]) == 1
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "elsewhere"))
    assert artifact_store(store).fetch(f"runs/{job_id}/model.keras").stat().st_size == 400 << 20


def test_migrate_copies_every_output_and_reads_it_back(homes, tmp_path, monkeypatch):
    a, b = homes
    jobs = [_job(), _job()]
    for n, job_id in enumerate(jobs):
        for name in ("history.png", "overlays/x_cat.png", "model.keras"):
            path = a / "runs" / job_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(1000 + n))
    stray = a / "runs" / ("f" * 32) / "left.png"  # a job this database does not know
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    env = {**os.environ, "CONVLENS_HOME": str(a)}
    run = [sys.executable, "-m", "convlens.api.cli", "artifacts", "migrate"]
    wrong = subprocess.run([*run, "--to", "home"], env=env, capture_output=True, text=True)
    assert wrong.returncode == 2 and "`database` or a URL" in wrong.stderr and "Traceback" not in wrong.stderr
    done = subprocess.run([*run, "--to", "database"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "6 files of 2 jobs" in done.stdout and "6 read back equal" in done.stdout and "1 files" in done.stdout
    monkeypatch.setenv("CONVLENS_HOME", str(b))
    monkeypatch.setenv("CONVLENS_ARTIFACT_STORE", "database")
    for job_id in jobs:
        for name in ("history.png", "overlays/x_cat.png", "model.keras"):
            key = f"runs/{job_id}/{name}"
            assert artifact_store().fetch(key).read_bytes() == (a / key).read_bytes()


def test_a_stored_folder_is_the_same_folder_on_another_home(homes, monkeypatch):
    """A study's sample: its classify job names `runs/ID/sample` and finds it wherever it runs."""
    from helpers import image_folder

    from convlens.worker.paths import is_run_key

    a, b = homes
    job_id = _job()
    sample = a / "runs" / job_id / "sample"
    assert image_folder(sample, per_class=3) == 6
    with session_scope() as s:
        artifact_store("database").publish(s, job_id, sorted(p for p in sample.rglob("*") if p.is_file()))
    key = f"runs/{job_id}/sample"
    assert is_run_key(key) and not is_run_key(str(sample)) and not is_run_key(f"runs/{job_id}/../x")
    monkeypatch.setenv("CONVLENS_HOME", str(b))
    monkeypatch.setenv("CONVLENS_ARTIFACT_STORE", "database")
    there = artifact_store().fetch_folder(key)
    assert there.is_relative_to(b / "cache")
    assert sorted(str(p.relative_to(there)) for p in there.rglob("*.png")) == sorted(
        str(p.relative_to(sample)) for p in sample.rglob("*.png"))
    assert all((there / p.relative_to(sample)).read_bytes() == p.read_bytes() for p in sample.rglob("*.png"))

    # `convlens artifacts get` on the other home: a folder, a file named by a's absolute path, and wrong names.
    env = {**os.environ, "CONVLENS_HOME": str(b), "CONVLENS_ARTIFACT_STORE": "database"}
    out = b.parent / "out"

    def get(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "convlens.api.cli", "artifacts", "get", *args],
                              env=env, capture_output=True, text=True, timeout=120)

    done = get(key, "--to", str(out))
    assert done.returncode == 0 and "6 files copied" in done.stdout, done.stderr
    assert all((out / "sample" / p.relative_to(sample)).read_bytes() == p.read_bytes()
               for p in sample.rglob("*.png"))
    one = next(sample.rglob("*.png"))
    assert get(str(one), "--to", str(out)).returncode == 0 and (out / one.name).read_bytes() == one.read_bytes()
    for wrong, says in [(f"runs/{job_id}/nothing.png", "no file or folder of that name"),
                        ("/etc/passwd", "not a job's output"), (f"runs/{job_id}/../../etc", "not a job's output")]:
        refused = get(wrong, "--to", str(out))
        assert refused.returncode != 0 and says in refused.stderr and "Traceback" not in refused.stderr
