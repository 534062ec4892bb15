"""Image folders for the tests that need real CIFAR-10 pictures in awkward shapes."""

from __future__ import annotations

import numpy as np
from PIL import Image


def make_messy_folder(root, cifar, n=40):
    """Real test images as PNG/JPEG in class folders, plus grayscale, RGBA and unreadable files."""
    idx = np.random.default_rng(2).choice(10_000, n, replace=False)
    for k, i in enumerate(idx):
        d = root / cifar.class_names[cifar.y_test[i]]
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(cifar.x_test[i])
        if k % 4 == 0:
            img.resize((96, 64)).save(d / f"{i}.jpg")
        elif k % 4 == 1:
            img.convert("L").save(d / f"{i}_gray.png")
        elif k % 4 == 2:
            img.convert("RGBA").save(d / f"{i}_rgba.png")
        else:
            img.save(d / f"{i}.png")
    bad = root / "junk"
    bad.mkdir()
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "readme.txt").write_text("hello")
    return n, {"corrupt.png", "empty.jpg", "readme.txt"}
