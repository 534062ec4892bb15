"""Listing a folder to classify and cutting it into shards: bookkeeping without TensorFlow, so the planning
step (and anything else that only lists files) never imports it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypeVar

import numpy as np

from convlens.ml.data.images import file_paths, path_order

P = TypeVar("P", str, Path)


def list_folder(root: Path) -> list[str]:
    """Every file under root (non-images, hidden files and what cannot be read included: each gets its row,
    with the reason when it is not an image), sorted, as path strings (what a plan stores; a Path per file cost
    more than the listing at 100,000 files)."""
    return file_paths(root)


def shard_files(files: list[P], n_shards: int) -> list[list[P]]:
    """n contiguous shards of the sorted list whose sizes differ by at most one: no overlap, nothing missing."""
    files = sorted(files, key=path_order)
    n_shards = max(1, min(n_shards, len(files))) if files else 1
    bounds = np.linspace(0, len(files), n_shards + 1).round().astype(int)
    return [files[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


OVERLAY_STEM = 80  # characters of the image's name kept: a file name may hold 255 bytes, the overlay adds 15


def overlay_name(path: Path) -> str:
    """The file name of an image's Grad-CAM overlay in its job's overlay folder (unique per path, by the hash;
    the stem, cut short and made of whole characters, only helps a person find it)."""
    stem = path.stem.encode("utf-8", "surrogateescape")[:OVERLAY_STEM].decode("utf-8", "ignore")
    return f"{hashlib.sha1(str(path).encode('utf-8', 'surrogateescape')).hexdigest()[:10]}_{stem}.png"
