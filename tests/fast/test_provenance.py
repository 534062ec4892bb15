"""Every job records what ran it: versions, machine, precision, seed and a fingerprint of the data it read."""

from __future__ import annotations

import platform

from helpers import image_folder
from PIL import Image

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope
from convlens.ml.provenance import fingerprint
from convlens.worker import steps


def test_a_job_records_its_provenance_and_the_data_fingerprint_follows_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    folder = tmp_path / "images"
    image_folder(folder, per_class=6)
    job_id = steps.create_job("train", {"dataset": str(folder), "epochs": 1, "seed": 7, "batch_size": 8})
    steps.execute_inline(job_id)
    with session_scope() as s:
        p = s.get(Job, job_id).provenance
    assert p["seed"] == 7 and p["python"] == platform.python_version() and p["tensorflow"] and p["keras"]
    assert p["dataset"] == str(folder.resolve()) and p["dataset_fingerprint"] == fingerprint(str(folder.resolve()))
    assert p["precision_policy"] in ("float32", "mixed_bfloat16", "mixed_float16") and p["cpu"]
    before = fingerprint(str(folder))
    Image.new("RGB", (32, 32), (1, 2, 3)).save(folder / "cat" / "cat_000.png")  # one image rewritten
    assert fingerprint(str(folder)) != before
