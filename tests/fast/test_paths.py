"""Paths a job reads: checked when the job is created, again when it runs, and at each file's opening, so that
swapping a file or a folder for a symlink after the checks reads nothing outside."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import image_folder, saved_model
from sqlalchemy import select

from convlens.db.models import Job, Prediction
from convlens.db.session import ensure_current, session_scope
from convlens.ml.data.images import decode_rgb
from convlens.ml.errors import ImageReadError
from convlens.ml.listing import list_folder, shard_files
from convlens.worker import steps
from convlens.worker.paths import PathRefused


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    root = tmp_path / "allowed"
    image_folder(root / "images", per_class=3)
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", str(root))
    (tmp_path / "home").mkdir()
    ensure_current()
    image_folder(tmp_path / "outside", per_class=1)
    return root


def test_each_open_checks_where_the_file_really_is(allowed, tmp_path):
    folder = allowed / "images"
    inside = folder / "cat" / "cat_000.png"
    (folder / "inner-link.png").symlink_to(inside)
    assert decode_rgb(folder / "inner-link.png", within=folder).shape == (32, 32, 3)
    (folder / "out-link.png").symlink_to(tmp_path / "outside" / "cat" / "cat_000.png")
    with pytest.raises(ImageReadError, match="outside"):
        decode_rgb(folder / "out-link.png", within=folder)
    os.mkfifo(folder / "fifo.png")  # opened without blocking, refused as not a regular file
    with pytest.raises(ImageReadError, match="not a regular file"):
        decode_rgb(folder / "fifo.png", within=folder)


def test_a_file_swapped_after_planning_is_not_read(allowed, tmp_path):
    model = saved_model(allowed / "m.keras", ["cat", "dog"])
    job_id = steps.create_job("classify", {"folder": str(allowed / "images"), "model": str(model)},
                              strict_paths=True)
    parts = steps.begin(job_id)  # planned: the shard's file list is fixed
    victim = allowed / "images" / "dog" / "dog_001.png"
    victim.unlink()
    victim.symlink_to(tmp_path / "outside" / "dog" / "dog_000.png")
    for part in parts:
        steps.run_part(part)
    with session_scope() as s:
        rows = {r.path: r for r in s.scalars(select(Prediction).where(Prediction.job_id == job_id))}
    assert len(rows) == 6
    assert rows[str(victim)].predicted is None and "outside" in rows[str(victim)].error
    assert sum(r.error is None for r in rows.values()) == 5


def test_a_folder_swapped_after_creation_fails_the_job(allowed, tmp_path):
    model = saved_model(allowed / "m.keras", ["cat", "dog"])
    folder = allowed / "images"
    job_id = steps.create_job("classify", {"folder": str(folder), "model": str(model)}, strict_paths=True)
    shutil.rmtree(folder)
    folder.symlink_to(tmp_path / "outside")
    with pytest.raises(PathRefused, match="symlink"):
        steps.execute_inline(job_id)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and "symlink" in job.error
        assert s.scalars(select(Prediction).where(Prediction.job_id == job_id)).first() is None


def test_models_and_datasets_must_stay_inside(allowed, tmp_path):
    model = saved_model(tmp_path / "outside" / "m.keras", ["cat", "dog"])
    for kind, params in [("classify", {"folder": str(allowed / "images"), "model": str(model)}),
                         ("layers", {"model": str(model)}), ("train", {"dataset": str(tmp_path / "outside")}),
                         ("kfold", {"dataset": str(tmp_path / "outside")}),
                         ("layers", {"model": "0" * 32, "dataset": str(tmp_path / "outside")})]:
        with pytest.raises(PathRefused, match="outside the allowed roots"):
            steps.create_job(kind, params, strict_paths=True)
    home_model = saved_model(tmp_path / "home" / "runs" / "x" / "m.keras", ["cat", "dog"])
    job = steps.create_job("layers", {"model": str(home_model)}, strict_paths=True)
    with session_scope() as s:
        assert s.get(Job, job).params["model"] == str(home_model.resolve())


def test_planning_and_aggregating_never_import_tensorflow(allowed, tmp_path):
    """A classify job's planning and aggregation steps (the cpu queue) in a fresh process: no TensorFlow."""
    import subprocess
    import sys

    model = saved_model(allowed / "m.keras", ["cat", "dog"])
    job_id = steps.create_job("classify", {"folder": str(allowed / "images"), "model": str(model),
                                           "shard_size": 2}, strict_paths=True)
    check = "; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'"

    def step(code: str) -> str:
        proc = subprocess.run([sys.executable, "-c", "import sys; from convlens.worker import steps; " + code + check,
                               job_id], capture_output=True, text=True, timeout=120, env={**os.environ})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    parts = step("print(' '.join(steps.begin(sys.argv[1])))").split()
    assert len(parts) == 3
    for part in parts:  # the shards themselves run the model (here, in this process)
        steps.run_part(part)
    step("steps.aggregate(sys.argv[1])")
    with session_scope() as s:
        assert s.get(Job, job_id).status == "succeeded"


def test_a_worker_loads_a_model_once_while_it_is_unchanged(allowed):
    from convlens.ml.saved import load_trained_cached, save_trained

    path = saved_model(allowed / "m.keras", ["cat", "dog"])
    first = load_trained_cached(path)
    assert load_trained_cached(path) is first
    save_trained(first.model, path, ["cat", "dog"], None, "seed", temperature=2.0)  # rewritten: loaded again
    again = load_trained_cached(path)
    assert again is not first and again.temperature == 2.0


def test_listing_names_every_entry_and_enters_no_symlinked_folder(allowed, tmp_path):
    folder = allowed / "listed"
    for name in ("a/b.png", "a-b/c.png", "a/z/d.png", "a/.hidden.png"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "a" / "in-link.png").symlink_to(folder / "a-b" / "c.png")
    (folder / "a" / "out-link.png").symlink_to(tmp_path / "outside" / "cat" / "cat_000.png")
    (folder / "a" / "dir-link").symlink_to(tmp_path / "outside")  # a symlinked folder is not entered
    listed = list_folder(folder)
    # Component by component ("a" before "a-b"), not character by character ("/" sorts after "-"). What cannot
    # be read is listed too, so that its row says why.
    assert listed == [str(folder / p) for p in ("a/.hidden.png", "a/b.png", "a/dir-link", "a/in-link.png",
                                                "a/out-link.png", "a/z/d.png", "a-b/c.png")]
    assert shard_files(list(reversed(listed)), 2) == [listed[:4], listed[4:]]
