"""Labelled image folders: root/<class>/**/<image>, decoded to RGB and resized to the model input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convlens.ml.data.cifar import ImageDataset
from convlens.ml.data.images import decode_batch, list_files
from convlens.ml.data.splits import stratified_split
from convlens.ml.errors import DatasetError


def class_folders(root: Path) -> list[Path]:
    """root's sub-folders, sorted: one a class. A symlinked one is refused, naming it: it could lead anywhere
    (a class `b` -> /usr would walk the whole system and train a class of no images)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot be read ({exc.strerror})") from None
    linked = [e.name for e in entries if e.is_symlink() and e.is_dir()]
    if linked:
        raise DatasetError(f"{root}: class folder {', '.join(linked)} is a symlink, which is not entered; put the "
                           "images in a real folder")
    return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]


def load_image_folder(
    root: Path, size: tuple[int, int] = (32, 32), test_fraction: float = 0.2, seed: int = 0
) -> tuple[ImageDataset, list[tuple[Path, str]]]:
    """Returns the dataset (a stratified test split carved out) and the unreadable files with reasons.
    Files whose real path leaves root (symlinks out) are among the unreadable ones."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    class_dirs = class_folders(root)
    if len(class_dirs) < 2:
        raise DatasetError(f"{root}: needs at least two class folders, found {len(class_dirs)}")
    xs, ys, errors = [], [], []
    for label, class_dir in enumerate(class_dirs):
        batch = decode_batch(list_files(class_dir), size, within=root)
        errors.extend(batch.errors)
        xs.append(batch.images)
        ys.append(np.full(len(batch.images), label, np.uint8))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) == 0:
        raise DatasetError(f"{root}: no readable images")
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    names = [d.name for d in class_dirs]
    return ImageDataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx], names), errors
