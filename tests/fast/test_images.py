"""Hostile files: a FIFO swapped in after planning, a decompression bomb; each is one unreadable row."""

from __future__ import annotations

import os

import numpy as np
from helpers import image_folder, saved_model
from PIL import Image

from convlens.ml.classify import classify_files
from convlens.ml.saved import load_trained


def test_fifo_and_bomb_are_recorded_and_the_rest_classified(tmp_path):
    folder = tmp_path / "images"
    image_folder(folder, per_class=3)
    Image.new("1", (20000, 20000), 1).save(folder / "cat" / "bomb.png")  # 400 megapixels in a few hundred kB
    assert (folder / "cat" / "bomb.png").stat().st_size < 2_000_000
    paths = sorted(folder.rglob("*.png"))
    swapped = folder / "dog" / "dog_000.png"
    swapped.unlink()
    os.mkfifo(swapped)  # replaced after the listing: open() would block forever on a FIFO
    trained = load_trained(saved_model(tmp_path / "model.keras", ["cat", "dog"]))
    rows = {r["path"]: r for r in classify_files(trained, paths, top_k=1)}
    assert len(rows) == 7
    assert rows[str(swapped)]["error"].startswith("not a regular file")
    assert rows[str(folder / "cat" / "bomb.png")]["error"].startswith("image too large")
    good = [r for r in rows.values() if r["error"] is None]
    assert len(good) == 5 and all(0 < r["confidence"] <= 1 for r in good)
    assert np.isclose(sum(p for _, p in good[0]["top_k"]), good[0]["confidence"])
