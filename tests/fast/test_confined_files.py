"""What an outsider broke (issue 22), at the level of the mechanism: the confined open, rows for every listed
entry, the lock a fork must not inherit, bounded overlay names and bounded decoding memory. The same findings
against a real API process, workers and both databases are in tests/test_outsider.py."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import image_folder, saved_model
from PIL import Image
from sqlalchemy import select

from convlens.db.models import Prediction
from convlens.db.session import session_scope
from convlens.ml.data.confined import open_confined
from convlens.ml.errors import FileRefused
from convlens.worker import steps


def test_convlens_own_files_are_never_opened_by_a_user_named_path(home, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "db-link.png").symlink_to(home / "convlens.db")
    os.link(home / "convlens.db", folder / "db-hardlink.png")
    (folder / "plain.png").write_bytes(b"x")
    for name, reason in (("db-link.png", "outside"), ("db-hardlink.png", "convlens's own files")):
        with pytest.raises(FileRefused, match=reason):
            open_confined(folder / name, within=folder)
    # A folder that holds CONVLENS_HOME itself: the symlink resolves inside it, and is still refused.
    with pytest.raises(FileRefused, match="convlens's own files"):
        open_confined(folder / "db-link.png", within=tmp_path)
    os.close(open_confined(folder / "plain.png", within=folder))


def test_a_parent_folder_swapped_for_a_symlink_is_not_followed(tmp_path):
    folder, outside = tmp_path / "images", tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (outside).mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (folder / "sub" / "secret.png").write_bytes(b"mine")
    os.close(open_confined(folder / "sub" / "secret.png", within=folder))  # caches the folder's descriptor
    (folder / "sub" / "secret.png").unlink()
    (folder / "sub").rmdir()
    (folder / "sub").symlink_to(outside)
    with pytest.raises(FileRefused):
        open_confined(folder / "sub" / "secret.png", within=folder)


def test_every_listed_entry_gets_a_row_with_its_reason(home, tmp_path, monkeypatch):
    folder = tmp_path / "allowed" / "images"
    image_folder(folder, per_class=2)
    os.mkfifo(folder / "cat" / "fifo.png")
    (folder / "cat" / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.png").write_bytes(b"x")
    (folder / "dog" / "out.png").symlink_to(tmp_path / "outside" / "x.png")
    (folder / "dog" / "dir-link").symlink_to(tmp_path / "outside")
    model = saved_model(tmp_path / "allowed" / "m.keras", ["cat", "dog"])
    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", str(tmp_path / "allowed"))
    job_id = steps.create_job("classify", {"folder": str(folder), "model": str(model)}, strict_paths=True)
    steps.execute_inline(job_id)
    with session_scope() as s:
        rows = {os.path.basename(r.path): r for r in s.scalars(select(Prediction).where(Prediction.job_id == job_id))}
    assert len(rows) == 8
    assert rows["fifo.png"].error.startswith("not a regular file")
    assert "outside" in rows["zero.png"].error and "outside" in rows["out.png"].error
    assert "outside" in rows["dir-link"].error or "folder" in rows["dir-link"].error
    assert sum(r.error is None for r in rows.values()) == 4


def test_a_fork_does_not_keep_the_embedded_redis_lock(home):
    """A pool child forked while a thread held the start lock must not hold it on: another process gets it as
    soon as the thread lets go, while the child lives on."""
    import threading

    from convlens.worker.broker import _start_lock

    lock_file = home / "redis.lock"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with _start_lock(lock_file):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    child = os.fork()
    if child == 0:  # the "pool child": lives on for a while, doing nothing
        time.sleep(5)
        os._exit(0)
    try:
        release.set()
        thread.join(10)
        probe = ("import fcntl, sys; f = open(sys.argv[1], 'w'); "
                 "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('taken')")
        out = subprocess.run([sys.executable, "-c", probe, str(lock_file)], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "taken", out.stderr
        assert os.waitpid(child, os.WNOHANG) == (0, 0)  # the child still runs
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_long_file_name_gets_its_overlay(home, tmp_path):
    from convlens.ml.classify import classify_files
    from convlens.ml.saved import load_trained

    folder = tmp_path / "images"
    image_folder(folder, per_class=1)
    long_name = folder / "cat" / ("x" * 247 + ".png")
    Image.new("RGB", (40, 30), (200, 0, 0)).save(long_name)
    trained = load_trained(saved_model(tmp_path / "m.keras", ["cat", "dog"]))
    rows = classify_files(trained, sorted(str(p) for p in folder.rglob("*.png")), gradcam=True,
                          out_dir=tmp_path / "overlays")
    assert all(r["error"] is None for r in rows) and len(rows) == 3
    overlay = next(r["overlay"] for r in rows if r["path"] == str(long_name))
    assert len(os.path.basename(overlay).encode()) <= 255 and Image.open(overlay).size == (40, 30)


MEMORY_PROBE = """
import json, resource, sys
from convlens.ml.classify import classify_files
from convlens.ml.saved import load_trained
trained = load_trained(sys.argv[1])
classify_files(trained, [sys.argv[2]], gradcam=True, out_dir=__import__("pathlib").Path(sys.argv[3]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = classify_files(trained, sys.argv[4:], gradcam=True, out_dir=__import__("pathlib").Path(sys.argv[3]))
print(json.dumps({"base_kb": base, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "errors": [r["error"] for r in rows]}))
"""


def test_decoding_large_images_is_bounded_in_memory(home, tmp_path):
    """Four 63.9-megapixel PNGs (200 kB each) classified with Grad-CAM: they are decoded one at a time (the
    pixel budget) and their overlays are scaled down, so the peak stays near one image's decoding."""
    big = tmp_path / "big"
    big.mkdir()
    Image.new("RGB", (7990, 8000), (90, 120, 200)).save(big / "a.png")
    paths = []
    for i in range(4):
        paths.append(big / f"big{i}.png")
        os.link(big / "a.png", paths[-1])
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(small)
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(model), str(small), str(tmp_path / "ov"),
                          *map(str, paths)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CONVLENS_DECODE_MEGAPIXELS": "100"})
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["errors"] == [None] * 4
    grown_gb = (figures["peak_kb"] - figures["base_kb"]) / 1e6
    # One image decoded at a time is ~0.45 GB (PIL's 4-byte RGB plus the model view); four at once were 7 GB.
    print(f"decoding memory: grew {grown_gb:.2f} GB over {figures['base_kb'] / 1e6:.2f} GB for four 63.9 MP PNGs")
    assert grown_gb < 1.2, figures
