"""CIFAR-10 from the official binary layout, parsed with numpy (never pickle), downloaded when absent."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlens.ml.errors import DatasetError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
FOLDER = "cifar-10-batches-bin"
TARBALL = "cifar-10-binary.tar.gz"
RECORD = 1 + 32 * 32 * 3
RECORDS_PER_FILE = 10_000
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"


@dataclass
class ImageDataset:
    """uint8 images held once in memory (N, H, W, 3) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file: records of 1 label byte + 3072 pixel bytes (R, G, B planes, row-major)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    size = path.stat().st_size
    if size != RECORD * RECORDS_PER_FILE:
        raise DatasetError(
            f"{path}: truncated or corrupt: {size} bytes, expected {RECORD * RECORDS_PER_FILE} "
            f"({RECORDS_PER_FILE} records of {RECORD} bytes)"
        )
    raw = np.fromfile(path, dtype=np.uint8).reshape(RECORDS_PER_FILE, RECORD)
    labels = raw[:, 0].copy()
    if labels.max() > 9:
        raise DatasetError(f"{path}: corrupt: label byte {int(labels.max())} is outside 0..9")
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return images, labels


def read_class_names(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != 10:
        raise DatasetError(f"{path}: corrupt: expected 10 class names, found {len(names)}")
    return names


def load_cifar10(
    data_dir: Path, download: bool = True, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5
) -> ImageDataset:
    """Loads data_dir/cifar-10-batches-bin, extracting or downloading the official tarball first if absent."""
    folder = ensure_cifar10(Path(data_dir), download=download, url=url, md5=md5)
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = read_batch(folder / TEST_FILE)
    return ImageDataset(
        x_train=np.concatenate([p[0] for p in parts]),
        y_train=np.concatenate([p[1] for p in parts]),
        x_test=x_test,
        y_test=y_test,
        class_names=read_class_names(folder / "batches.meta.txt"),
    )


def ensure_cifar10(
    data_dir: Path, download: bool = True, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5
) -> Path:
    folder = data_dir / FOLDER
    if folder.is_dir():
        return folder
    tarball = data_dir / TARBALL
    if not tarball.is_file():
        if not download:
            raise DatasetError(f"{folder}: not found and download is off: put the official {TARBALL} (or its "
                               f"extracted {FOLDER}/) in a folder and set CONVLENS_DATA_DIR to it")
        data_dir.mkdir(parents=True, exist_ok=True)
        download_file(url, tarball, md5)
    elif md5sum(tarball) != md5:
        raise DatasetError(f"{tarball}: MD5 mismatch, expected {md5}")
    safe_extract(tarball, data_dir)
    if not folder.is_dir():
        raise DatasetError(f"{tarball}: does not contain {FOLDER}/")
    return folder


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, target: Path, md5: str) -> None:
    """Downloads to a temp file beside target, verifies MD5, then renames: a failed download leaves nothing."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        got = md5sum(tmp)
        if got != md5:
            raise DatasetError(f"{url}: MD5 mismatch: got {got}, expected {md5}")
        os.replace(tmp, target)
    except OSError as exc:
        raise DatasetError(f"CIFAR-10 is not in {target.parent} and the download failed ({exc}): put the official "
                           f"{TARBALL} (or its extracted {FOLDER}/) in a folder and set CONVLENS_DATA_DIR to it") \
            from exc
    finally:
        tmp.unlink(missing_ok=True)


def safe_extract(tarball: Path, target: Path) -> None:
    """Extracts regular files and folders only; any member that would land outside target is refused."""
    root = target.resolve()
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                dest = (root / member.name).resolve()
                if not dest.is_relative_to(root) or not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{tarball}: unsafe member {member.name!r} refused")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{tarball}: corrupt archive: {exc}") from exc


def export_test_sample(data: ImageDataset, n: int, folder: Path, seed: int = 0) -> int:
    """Writes a stratified sample of n test images as PNGs under folder/<class>/ (the folder names the truth,
    so classifying it reports accuracy); returns how many were written."""
    from PIL import Image

    from convlens.ml.data.splits import stratified_subset

    for i in stratified_subset(data.y_test, n, seed):
        target = folder / data.class_names[data.y_test[i]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.x_test[i]).save(target / f"test_{i:05d}.png")
    return min(n, len(data.y_test))
